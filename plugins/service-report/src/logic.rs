//! The report's arithmetic over plain tickets, unit-tested natively: grouping by the chosen keys,
//! open and overdue counts, and the median time to close.

use std::collections::BTreeMap;

use rapport_plugin::{Interaction, InteractionKind, TicketStatus};

/// The keys a report may group by, as params spell them.
pub const KEYS: [&str; 3] = ["branch", "channel", "category"];

/// What the report reads of one ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// The customer's branch, the interaction's channel, the ticket's category; "(none)" when unset.
    pub keys: [String; 3],
    pub occurred_at: i64,
    /// Open or pending.
    pub open: bool,
    pub due_at: Option<i64>,
    pub closed_at: Option<i64>,
}

/// What the report reads of a timeline's interaction at a customer of `branch`: `None` for one
/// that is not a customer's ticket. Plugins' follow-ups (`source` `plugin:…`) are skipped: the
/// escalation tasks the service-standard policy opens are tickets on channel `task`, and counting
/// them would report every escalated ticket twice, the second time as a `task` issue.
pub fn ticket_of(branch: &str, i: &Interaction) -> Option<Ticket> {
    let (InteractionKind::Ticket, Some(t)) = (&i.kind, &i.ticket) else { return None };
    if i.source.starts_with("plugin:") {
        return None;
    }
    Some(Ticket {
        keys: [branch.to_owned(), i.channel.clone(), t.category.clone().unwrap_or_else(|| "(none)".into())],
        occurred_at: i.occurred_at,
        open: !matches!(t.status, TicketStatus::Closed),
        due_at: t.due_at,
        closed_at: t.closed_at,
    })
}

/// One group's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub keys: Vec<String>,
    pub tickets: u64,
    pub open: u64,
    /// Open with a due time before `as_of`.
    pub overdue: u64,
    pub closed: u64,
    /// Over closed tickets with a close time, hours from opening to closing, rounded to 0.01.
    pub median_hours_to_close: Option<f64>,
}

/// Group tickets by the keys at `by` (indices into `KEYS`), ordered by the keys.
pub fn summarize(tickets: &[Ticket], by: &[usize], as_of: i64) -> Vec<Row> {
    let mut groups: BTreeMap<Vec<String>, (Row, Vec<f64>)> = BTreeMap::new();
    for t in tickets {
        let keys: Vec<String> = by.iter().map(|&k| t.keys[k].clone()).collect();
        let (row, hours) = groups.entry(keys.clone()).or_insert_with(|| {
            (Row { keys, tickets: 0, open: 0, overdue: 0, closed: 0, median_hours_to_close: None }, Vec::new())
        });
        row.tickets += 1;
        if t.open {
            row.open += 1;
            if t.due_at.is_some_and(|d| d < as_of) {
                row.overdue += 1;
            }
        } else {
            row.closed += 1;
            if let Some(c) = t.closed_at {
                hours.push((c - t.occurred_at) as f64 / 3_600_000.0);
            }
        }
    }
    groups
        .into_values()
        .map(|(mut row, hours)| {
            row.median_hours_to_close = plugin_kit::median(&hours).map(|h| (h * 100.0).round() / 100.0);
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ticket(branch: &str, category: &str, open: bool, due_at: Option<i64>, hours_to_close: Option<i64>) -> Ticket {
        Ticket {
            keys: [branch.into(), "phone".into(), category.into()],
            occurred_at: 100 * H,
            open,
            due_at,
            closed_at: hours_to_close.map(|h| 100 * H + h),
        }
    }

    fn interaction(
        kind: InteractionKind,
        channel: &str,
        source: &str,
        ticket: Option<rapport_plugin::Ticket>,
    ) -> Interaction {
        Interaction {
            id: 1,
            customer: 7,
            kind,
            channel: channel.into(),
            source: source.into(),
            external_id: None,
            occurred_at: 100 * H,
            amount: None,
            subject: Some("Overdue ticket #3: refund".into()),
            body: None,
            attributes: "{}".into(),
            ticket,
        }
    }

    #[test]
    fn only_customers_tickets_are_read_not_plugins_tasks() {
        let open = || {
            Some(rapport_plugin::Ticket {
                status: TicketStatus::Pending,
                category: Some("escalation".into()),
                due_at: Some(104 * H),
                resolution: None,
                closed_at: None,
            })
        };
        let t = ticket_of("bkk", &interaction(InteractionKind::Ticket, "phone", "api", open())).unwrap();
        assert_eq!(t.keys, ["bkk", "phone", "escalation"]);
        assert_eq!((t.open, t.due_at, t.occurred_at), (true, Some(104 * H), 100 * H));
        let task = interaction(InteractionKind::Ticket, "task", "plugin:service-standard", open());
        assert_eq!(ticket_of("bkk", &task), None);
        assert_eq!(ticket_of("bkk", &interaction(InteractionKind::Call, "phone", "api", None)), None);
        // A ticket without its ticket fields is none; an imported one is read.
        assert_eq!(ticket_of("bkk", &interaction(InteractionKind::Ticket, "phone", "api", None)), None);
        let imported = interaction(InteractionKind::Ticket, "email", "import", open());
        assert_eq!(ticket_of("(none)", &imported).map(|t| t.keys[1].clone()), Some("email".into()));
    }

    #[test]
    fn groups_count_open_overdue_and_the_median_to_close() {
        let tickets = [
            ticket("bkk", "billing", true, Some(50 * H), None),  // overdue
            ticket("bkk", "billing", true, Some(500 * H), None), // open, not yet due
            ticket("bkk", "billing", true, None, None),          // open, no due time
            ticket("bkk", "billing", false, None, Some(H)),
            ticket("bkk", "delivery", false, None, Some(3 * H)),
            ticket("bkk", "delivery", false, None, Some(4 * H)),
            ticket("cnx", "billing", false, None, None), // closed without a time: no duration
        ];
        let rows = summarize(&tickets, &[0, 2], 200 * H);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].keys, ["bkk", "billing"]);
        assert_eq!((rows[0].tickets, rows[0].open, rows[0].overdue, rows[0].closed), (4, 3, 1, 1));
        assert_eq!(rows[0].median_hours_to_close, Some(1.0));
        assert_eq!(rows[1].median_hours_to_close, Some(3.5), "the mean of the two middle durations");
        assert_eq!(
            (rows[2].keys.as_slice(), rows[2].median_hours_to_close),
            (["cnx".to_owned(), "billing".to_owned()].as_slice(), None)
        );
        // One group of everything; overdue judged at another time.
        let all = summarize(&tickets, &[], 40 * H);
        assert_eq!((all.len(), all[0].tickets, all[0].overdue), (1, 7, 0));
        assert_eq!(all[0].median_hours_to_close, Some(3.0));
    }
}
