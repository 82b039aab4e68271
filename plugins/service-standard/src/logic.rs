//! The policy's logic over plain values, so that it is unit-tested natively: a ticket's category
//! and due time from the SLA table, the resolution a closing ticket needs, and which tickets are
//! overdue and to whom their escalation goes.

use std::collections::{BTreeMap, BTreeSet};

use rapport_plugin::{Interaction, InteractionKind, Task, Ticket, TicketStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The policy's configuration (`config.schema.json` describes the same fields for admins).
#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Category → its service level: the same at every branch.
    pub sla: BTreeMap<String, Sla>,
    /// The category of a ticket that names none and matches no keyword.
    pub default_category: String,
    /// Category → words in a ticket's subject or body that put it in that category.
    pub keywords: BTreeMap<String, Vec<String>>,
    /// Branch code (or `*` for every branch) → role → the person who holds it there.
    pub managers: BTreeMap<String, BTreeMap<String, String>>,
    pub escalation: Escalation,
    /// A ticket closes only with a resolution note.
    pub require_resolution: bool,
    /// How many of a customer's latest interactions are looked through for overdue tickets.
    pub scan_limit: u32,
}

impl Default for Config {
    fn default() -> Self {
        let sla = |hours| Sla { due_hours: Some(hours), due_minutes: None, escalate_to: default_role() };
        let words = |w: &[&str]| w.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        Config {
            sla: BTreeMap::from([
                ("general".into(), sla(48)),
                ("billing".into(), sla(24)),
                ("complaint".into(), sla(24)),
                ("delivery".into(), sla(48)),
                ("product".into(), sla(72)),
            ]),
            default_category: "general".into(),
            keywords: BTreeMap::from([
                ("billing".into(), words(&["refund", "invoice", "payment", "คืนเงิน", "ใบแจ้งหนี้", "ชำระเงิน"])),
                ("complaint".into(), words(&["complaint", "rude", "ร้องเรียน"])),
                ("delivery".into(), words(&["delivery", "shipping", "parcel", "จัดส่ง", "ส่งของ", "พัสดุ"])),
                ("product".into(), words(&["broken", "defect", "damaged", "ชำรุด"])),
            ]),
            managers: BTreeMap::new(),
            escalation: Escalation::default(),
            require_resolution: true,
            scan_limit: 100,
        }
    }
}

/// One category's service level: due within hours or minutes of the ticket's opening.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sla {
    #[serde(default)]
    pub due_hours: Option<u32>,
    #[serde(default)]
    pub due_minutes: Option<u32>,
    /// The role an overdue ticket of this category escalates to.
    #[serde(default = "default_role")]
    pub escalate_to: String,
}

impl Sla {
    pub fn due_ms(&self) -> i64 {
        let minutes = self.due_minutes.map_or(i64::from(self.due_hours.unwrap_or(0)) * 60, i64::from);
        minutes * 60_000
    }

    /// "24 hours", "90 minutes": for the reasons people read.
    fn describe(&self) -> String {
        match (self.due_minutes, self.due_hours) {
            (Some(m), _) => format!("{m} minutes"),
            (None, Some(h)) => format!("{h} hours"),
            (None, None) => "no time".into(),
        }
    }
}

fn default_role() -> String {
    "branch-manager".into()
}

/// The follow-up task an overdue ticket gets.
#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct Escalation {
    /// The task's category; tasks of it are how the policy knows a ticket was escalated.
    pub category: String,
    /// The task is due this long after the escalation.
    pub due_hours: u32,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation { category: "escalation".into(), due_hours: 4 }
    }
}

impl Config {
    /// A configuration the policy cannot apply; `Err` is (message, config field).
    pub fn check(&self) -> Result<(), (String, String)> {
        for (category, sla) in &self.sla {
            if sla.due_hours.is_some() == sla.due_minutes.is_some() {
                return Err((
                    format!("sla `{category}` needs exactly one of `due_hours` and `due_minutes`"),
                    format!("config.sla.{category}"),
                ));
            }
        }
        let known = |c: &String| self.sla.contains_key(c);
        if !known(&self.default_category) {
            return Err((
                format!("default_category `{}` is not a category of `sla`", self.default_category),
                "config.default_category".into(),
            ));
        }
        if let Some(c) = self.keywords.keys().find(|c| !known(c)) {
            return Err((
                format!("keywords name `{c}`, which is not a category of `sla`"),
                format!("config.keywords.{c}"),
            ));
        }
        Ok(())
    }
}

/// The ticket as the host's JSON spells it: the value of a `ticket` field patch (the host patches
/// top-level fields, so the whole ticket is sent with the category and due time filled in).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct TicketValue {
    pub status: &'static str,
    pub category: Option<String>,
    pub due_at: Option<i64>,
    pub resolution: Option<String>,
    pub closed_at: Option<i64>,
}

fn status_name(s: TicketStatus) -> &'static str {
    match s {
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::Closed => "closed",
    }
}

/// What the policy says about a ticket being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    Allow,
    Deny {
        reason: String,
        field: String,
    },
    /// Write the ticket with these values.
    Patch(TicketValue),
}

/// A ticket created (or updated): it needs a resolution to close, a category of the standard,
/// and the standard's due time. `before` is the stored ticket for an update; `from_action` marks
/// another plugin's follow-up task, whose own category the policy leaves alone.
pub fn ticket(config: &Config, i: &Interaction, before: Option<&Ticket>, from_action: bool) -> Judged {
    let t = i.ticket.clone().unwrap_or(Ticket {
        status: TicketStatus::Open,
        category: None,
        due_at: None,
        resolution: None,
        closed_at: None,
    });
    let closing = t.status == TicketStatus::Closed && before.is_none_or(|b| b.status != TicketStatus::Closed);
    let resolved = t.resolution.as_deref().is_some_and(|r| !r.trim().is_empty());
    if closing && config.require_resolution && !resolved {
        return Judged::Deny {
            reason: "a ticket closes only with a resolution note: set `ticket.resolution` to what was done for the \
                     customer (the service standard requires it)"
                .into(),
            field: "ticket.resolution".into(),
        };
    }
    let category = match t.category.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None => categorize(config, i).unwrap_or_else(|| config.default_category.clone()),
    };
    let Some(sla) = config.sla.get(&category) else {
        if from_action {
            return Judged::Allow;
        }
        return Judged::Deny {
            reason: format!(
                "category `{category}` is not in the service standard: use one of {}, or leave it out to have it \
                 chosen from the subject",
                config.sla.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
            field: "ticket.category".into(),
        };
    };
    // The standard is a maximum: an earlier due time someone promised stands, a later one does not.
    let standard = i.occurred_at.saturating_add(sla.due_ms());
    let due = t.due_at.filter(|&d| d <= standard).unwrap_or(standard);
    if i.ticket.is_some() && t.category.as_deref() == Some(category.as_str()) && t.due_at == Some(due) {
        return Judged::Allow;
    }
    Judged::Patch(TicketValue {
        status: status_name(t.status),
        category: Some(category),
        due_at: Some(due),
        resolution: t.resolution,
        closed_at: t.closed_at,
    })
}

/// The category whose keywords the subject or body contains (ignoring case); the most urgent
/// when several match.
pub fn categorize(config: &Config, i: &Interaction) -> Option<String> {
    let text = [i.subject.as_deref(), i.body.as_deref()].into_iter().flatten().collect::<Vec<_>>().join("\n");
    let text = text.to_lowercase();
    config
        .keywords
        .iter()
        .filter(|(_, words)| words.iter().any(|w| mentions(&text, &w.trim().to_lowercase())))
        .filter_map(|(c, _)| Some((config.sla.get(c)?.due_ms(), c)))
        .min()
        .map(|(_, c)| c.clone())
}

/// Whether lowercased `text` contains `term`. An English (ASCII) term must stand as whole words,
/// so "rude" is not found in "prudent"; any other term (Thai, written without spaces between
/// words) is found anywhere.
pub fn mentions(text: &str, term: &str) -> bool {
    if term.is_empty() {
        return false;
    }
    if !term.is_ascii() {
        return text.contains(term);
    }
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(term)
        .any(|(at, _)| !word(text[..at].chars().next_back()) && !word(text[at + term.len()..].chars().next()))
}

/// When a ticket is due: its own due time, else (a ticket logged before the policy was installed)
/// its opening plus the service level of its category, or of the default category when it has
/// none the standard knows.
pub fn due_at(config: &Config, i: &Interaction, t: &Ticket) -> Option<i64> {
    t.due_at.or_else(|| {
        let sla = t.category.as_deref().and_then(|c| config.sla.get(c.trim()));
        let sla = sla.or_else(|| config.sla.get(&config.default_category))?;
        Some(i.occurred_at.saturating_add(sla.due_ms()))
    })
}

/// Who an overdue ticket of this category at this branch goes to: the person configured for the
/// role at the branch (or at every branch, `*`), else the role at the branch ("branch-manager@bkk").
pub fn assignee(config: &Config, category: Option<&str>, branch: Option<&str>) -> String {
    let role = category.and_then(|c| config.sla.get(c)).map_or_else(default_role, |s| s.escalate_to.clone());
    let person = |b: &str| config.managers.get(b).and_then(|roles| roles.get(&role));
    match (branch.and_then(person).or_else(|| person("*")), branch) {
        (Some(name), _) => name.clone(),
        (None, Some(b)) => format!("{role}@{b}"),
        (None, None) => role,
    }
}

const TASK_PREFIX: &str = "Overdue ticket #";

/// The escalation tasks for the open tickets of a customer's timeline that are past due at `at`
/// and not escalated yet (an escalation task on the timeline names its ticket). `branch_of` tells
/// a ticket's branch: its `attributes.branch`, else the customer's.
pub fn escalations(
    config: &Config,
    at: i64,
    timeline: &[Interaction],
    customer_branch: impl FnOnce() -> Option<String>,
) -> Vec<Task> {
    let escalated: BTreeSet<u64> = timeline
        .iter()
        .filter(|i| i.channel == "task" && ticket_category(i) == Some(config.escalation.category.as_str()))
        .filter_map(|i| i.subject.as_deref()?.strip_prefix(TASK_PREFIX)?.split(':').next()?.trim().parse().ok())
        .collect();
    let overdue: Vec<(&Interaction, &Ticket, i64)> = timeline
        .iter()
        // Tasks are the organization's follow-ups, not customers' tickets: never escalated.
        .filter(|i| matches!(i.kind, InteractionKind::Ticket) && !i.source.starts_with("plugin:"))
        .filter(|i| !escalated.contains(&i.id))
        .filter_map(|i| {
            let t = i.ticket.as_ref()?;
            let due = due_at(config, i, t)?;
            (t.status != TicketStatus::Closed && due < at).then_some((i, t, due))
        })
        .collect();
    if overdue.is_empty() {
        return Vec::new();
    }
    let customer_branch = customer_branch();
    overdue
        .into_iter()
        .map(|(i, t, due)| {
            let attributes: Value = serde_json::from_str(&i.attributes).unwrap_or_default();
            let branch =
                attributes.get("branch").and_then(Value::as_str).map(str::to_owned).or(customer_branch.clone());
            let category = t.category.as_deref();
            let level = category.and_then(|c| config.sla.get(c)).map(|s| format!(", due within {}", s.describe()));
            Task {
                customer: i.customer,
                subject: format!("{TASK_PREFIX}{}: {}", i.id, i.subject.as_deref().unwrap_or("service request")),
                body: Some(format!(
                    "Ticket #{} ({}{}) opened {} was due {} and is still {}{}. Contact the customer and resolve it.",
                    i.id,
                    category.unwrap_or("no category"),
                    level.unwrap_or_default(),
                    time(i.occurred_at),
                    time(due),
                    status_name(t.status),
                    branch.as_deref().map(|b| format!(" at branch {b}")).unwrap_or_default(),
                )),
                category: Some(config.escalation.category.clone()),
                due_at: Some(at.saturating_add(i64::from(config.escalation.due_hours) * 3_600_000)),
                assignee: Some(assignee(config, category, branch.as_deref())),
            }
        })
        .collect()
}

fn ticket_category(i: &Interaction) -> Option<&str> {
    i.ticket.as_ref()?.category.as_deref()
}

/// A timestamp as `YYYY-MM-DD HH:MM UTC` (shared with the other standard plugins).
pub use plugin_kit::date_time as time;

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_700_000_000_000;

    fn ticket_of(
        status: TicketStatus,
        category: Option<&str>,
        due_at: Option<i64>,
        resolution: Option<&str>,
    ) -> Ticket {
        Ticket {
            status,
            category: category.map(Into::into),
            due_at,
            resolution: resolution.map(Into::into),
            closed_at: None,
        }
    }

    fn interaction(id: u64, subject: &str, ticket: Option<Ticket>) -> Interaction {
        Interaction {
            id,
            customer: 7,
            kind: InteractionKind::Ticket,
            channel: "phone".into(),
            source: "api".into(),
            external_id: None,
            occurred_at: T0,
            amount: None,
            subject: Some(subject.into()),
            body: None,
            attributes: "{}".into(),
            ticket,
        }
    }

    fn patched(j: Judged) -> TicketValue {
        match j {
            Judged::Patch(t) => t,
            other => panic!("expected a patch, got {other:?}"),
        }
    }

    #[test]
    fn a_new_ticket_gets_its_category_from_keywords_and_the_standards_due_time() {
        let c = Config::default();
        let open = ticket_of(TicketStatus::Open, None, None, None);
        let t = patched(ticket(&c, &interaction(0, "Where is my refund?", Some(open.clone())), None, false));
        assert_eq!(t.category.as_deref(), Some("billing"));
        assert_eq!(t.due_at, Some(T0 + 24 * HOUR));
        assert_eq!(t.status, "open");
        // Thai keywords; no keyword: the default category; no ticket at all: an open one.
        let t = patched(ticket(&c, &interaction(0, "พัสดุยังไม่มาถึง", Some(open.clone())), None, false));
        assert_eq!((t.category.as_deref(), t.due_at), (Some("delivery"), Some(T0 + 48 * HOUR)));
        let t = patched(ticket(&c, &interaction(0, "A question", None), None, false));
        assert_eq!((t.category.as_deref(), t.due_at, t.status), (Some("general"), Some(T0 + 48 * HOUR), "open"));
        // Several categories match: the most urgent wins (billing 24 h before delivery 48 h).
        let t = patched(ticket(&c, &interaction(0, "Delivery late, I want a refund", Some(open)), None, false));
        assert_eq!(t.category.as_deref(), Some("billing"));
    }

    #[test]
    fn a_given_category_stands_and_the_due_time_is_at_most_the_standards() {
        let c = Config::default();
        let given = ticket_of(TicketStatus::Open, Some(" product "), Some(T0 + 500 * HOUR), None);
        let t = patched(ticket(&c, &interaction(0, "refund", Some(given)), None, false));
        assert_eq!((t.category.as_deref(), t.due_at), (Some("product"), Some(T0 + 72 * HOUR)));
        // An earlier promise stands: nothing to patch.
        let sooner = ticket_of(TicketStatus::Open, Some("product"), Some(T0 + 2 * HOUR), None);
        assert_eq!(ticket(&c, &interaction(0, "x", Some(sooner)), None, false), Judged::Allow);
        // Minutes work as well as hours.
        let mut fast = Config::default();
        fast.sla.insert("outage".into(), Sla { due_hours: None, due_minutes: Some(30), escalate_to: "duty".into() });
        let outage = ticket_of(TicketStatus::Open, Some("outage"), None, None);
        assert_eq!(patched(ticket(&fast, &interaction(0, "x", Some(outage)), None, false)).due_at, Some(T0 + HOUR / 2));
    }

    #[test]
    fn an_unknown_category_is_denied_except_on_other_plugins_tasks() {
        let c = Config::default();
        let odd = ticket_of(TicketStatus::Open, Some("vibes"), None, None);
        match ticket(&c, &interaction(0, "x", Some(odd.clone())), None, false) {
            Judged::Deny { reason, field } => {
                assert_eq!(field, "ticket.category");
                assert!(reason.contains("`vibes` is not in the service standard: use one of `billing`"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ticket(&c, &interaction(0, "x", Some(odd)), None, true), Judged::Allow);
    }

    #[test]
    fn closing_needs_a_resolution_note() {
        let c = Config::default();
        for blank in [None, Some(""), Some("   ")] {
            let closed = ticket_of(TicketStatus::Closed, Some("billing"), None, blank);
            match ticket(&c, &interaction(0, "x", Some(closed)), None, false) {
                Judged::Deny { reason, field } => {
                    assert_eq!(field, "ticket.resolution");
                    assert!(reason.starts_with("a ticket closes only with a resolution note"), "{reason}");
                }
                other => panic!("{blank:?}: {other:?}"),
            }
        }
        let resolved = ticket_of(TicketStatus::Closed, Some("billing"), None, Some("refunded 300 THB"));
        let t = patched(ticket(&c, &interaction(0, "x", Some(resolved)), None, false));
        assert_eq!((t.status, t.resolution.as_deref()), ("closed", Some("refunded 300 THB")));
        // A ticket already closed before (an update of another field) is not judged again.
        let was = ticket_of(TicketStatus::Closed, Some("billing"), Some(T0 + 24 * HOUR), None);
        assert_eq!(ticket(&c, &interaction(1, "x", Some(was.clone())), Some(&was), false), Judged::Allow);
        let lenient = Config { require_resolution: false, ..Config::default() };
        let closed = ticket_of(TicketStatus::Closed, Some("billing"), None, None);
        assert!(matches!(ticket(&lenient, &interaction(0, "x", Some(closed)), None, false), Judged::Patch(_)));
    }

    #[test]
    fn the_configuration_is_checked_for_what_the_schema_cannot_say() {
        assert_eq!(Config::default().check(), Ok(()));
        let c: Config = serde_json::from_str(r#"{"default_category": "misc"}"#).unwrap();
        assert_eq!(c.check().unwrap_err().1, "config.default_category");
        let c: Config = serde_json::from_str(r#"{"sla": {"general": {"due_hours": 1, "due_minutes": 5}}}"#).unwrap();
        assert_eq!(c.check().unwrap_err().1, "config.sla.general");
        let c: Config =
            serde_json::from_str(r#"{"sla": {"general": {"due_hours": 8}}, "keywords": {"billing": ["refund"]}}"#)
                .unwrap();
        assert_eq!(c.check().unwrap_err().1, "config.keywords.billing");
        assert!(serde_json::from_str::<Config>(r#"{"sla": {"x": {"due_days": 1}}}"#).is_err());
    }

    #[test]
    fn the_assignee_is_the_branchs_person_for_the_role() {
        let mut c = Config::default();
        c.managers.insert("bkk-01".into(), BTreeMap::from([("branch-manager".into(), "Somchai".into())]));
        c.managers.insert("*".into(), BTreeMap::from([("branch-manager".into(), "Head office".into())]));
        assert_eq!(assignee(&c, Some("billing"), Some("bkk-01")), "Somchai");
        assert_eq!(assignee(&c, Some("billing"), Some("cnx-02")), "Head office");
        c.managers.remove("*");
        assert_eq!(assignee(&c, Some("billing"), Some("cnx-02")), "branch-manager@cnx-02");
        assert_eq!(assignee(&c, None, None), "branch-manager");
    }

    fn stored(id: u64, status: TicketStatus, due: i64) -> Interaction {
        interaction(id, "Broken blender", Some(ticket_of(status, Some("product"), Some(due), None)))
    }

    #[test]
    fn an_open_ticket_past_due_is_escalated_once() {
        let mut c = Config::default();
        c.managers.insert("bkk-01".into(), BTreeMap::from([("branch-manager".into(), "Somchai".into())]));
        let now = T0 + 100 * HOUR;
        let timeline = vec![
            stored(1, TicketStatus::Open, T0 + 72 * HOUR),
            stored(2, TicketStatus::Closed, T0 + 72 * HOUR),
            stored(3, TicketStatus::Pending, now + HOUR),
            stored(4, TicketStatus::Pending, T0),
        ];
        let tasks = escalations(&c, now, &timeline, || Some("bkk-01".into()));
        assert_eq!(tasks.len(), 2, "{tasks:?}");
        let task = &tasks[0];
        assert_eq!(task.subject, "Overdue ticket #1: Broken blender");
        assert_eq!(task.assignee.as_deref(), Some("Somchai"));
        assert_eq!(task.category.as_deref(), Some("escalation"));
        assert_eq!(task.due_at, Some(now + 4 * HOUR));
        let body = task.body.as_deref().unwrap();
        assert!(body.contains("due 2023-11-17 22:13 UTC and is still open at branch bkk-01"), "{body}");
        assert_eq!(tasks[1].subject, "Overdue ticket #4: Broken blender");

        // Once the tasks are on the timeline, nothing more; nor are tasks escalated themselves.
        let mut later = timeline.clone();
        for (n, t) in tasks.into_iter().enumerate() {
            let mut i = interaction(
                10 + n as u64,
                &t.subject,
                Some(ticket_of(TicketStatus::Open, t.category.as_deref(), t.due_at, None)),
            );
            i.channel = "task".into();
            i.source = "plugin:service-standard".into();
            later.push(i);
        }
        assert!(escalations(&c, now, &later, || None).is_empty());
        // Later, ticket 3 is past due too: it alone is escalated.
        let tasks = escalations(&c, now + 2 * HOUR, &later, || None);
        assert_eq!(tasks.iter().map(|t| t.subject.as_str()).collect::<Vec<_>>(), ["Overdue ticket #3: Broken blender"]);
    }

    #[test]
    fn a_tickets_own_branch_wins_and_no_overdue_ticket_reads_nothing() {
        let c = Config::default();
        let mut t = stored(1, TicketStatus::Open, T0);
        t.attributes = r#"{"branch": "cnx-02"}"#.into();
        let tasks = escalations(&c, T0 + 1, &[t], || Some("bkk-01".into()));
        assert_eq!(tasks[0].assignee.as_deref(), Some("branch-manager@cnx-02"));
        let fresh = stored(1, TicketStatus::Open, T0 + HOUR);
        assert!(escalations(&c, T0, &[fresh], || panic!("no customer read without an overdue ticket")).is_empty());
    }

    #[test]
    fn english_keywords_match_whole_words_and_thai_keywords_anywhere() {
        let c = Config::default();
        let category = |subject: &str| categorize(&c, &interaction(0, subject, None));
        // "rude" is not in "prudent", nor "payment" in "prepayments".
        assert_eq!(category("A prudent question about prepayments"), None);
        assert_eq!(category("The driver was RUDE."), Some("complaint".into()));
        assert_eq!(category("rude"), Some("complaint".into()));
        assert_eq!(category("(refund) please"), Some("billing".into()));
        // Thai is written without spaces between words: found inside the sentence.
        assert_eq!(category("พนักงานไม่สุภาพ ขอร้องเรียนค่ะ"), Some("complaint".into()));
        assert!(mentions("late delivery, again", "late delivery"));
        assert!(!mentions("slate delivery", "late delivery"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn a_ticket_logged_before_the_policy_is_due_by_the_standard() {
        let c = Config::default();
        let now = T0 + 50 * HOUR;
        // No due_at: billing is due in 24 h, an unknown or missing category takes general's 48 h.
        let legacy = |id, category: Option<&str>| {
            interaction(id, "Old ticket", Some(ticket_of(TicketStatus::Open, category, None, None)))
        };
        let timeline = vec![legacy(1, Some("billing")), legacy(2, None), legacy(3, Some("vibes")), {
            let mut fresh = legacy(4, Some("product"));
            fresh.occurred_at = now - HOUR;
            fresh
        }];
        let tasks = escalations(&c, now, &timeline, || None);
        let subjects: Vec<&str> = tasks.iter().map(|t| t.subject.as_str()).collect();
        assert_eq!(
            subjects,
            ["Overdue ticket #1: Old ticket", "Overdue ticket #2: Old ticket", "Overdue ticket #3: Old ticket"]
        );
        let body = tasks[0].body.as_deref().unwrap();
        assert!(body.contains(&format!("was due {}", time(T0 + 24 * HOUR))), "{body}");
        let body = tasks[1].body.as_deref().unwrap();
        assert!(body.contains(&format!("was due {}", time(T0 + 48 * HOUR))), "{body}");
        // Before the default's 48 h, only the billing ticket is late.
        assert_eq!(escalations(&c, T0 + 30 * HOUR, &timeline, || None).len(), 1);
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(T0), "2023-11-14 22:13 UTC");
    }
}
