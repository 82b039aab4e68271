//! The policy's logic over plain values, so that it is unit-tested natively: the sponsor tree's
//! rules, who may own a customer, and the forbidden-claim matcher (Thai and English).

use rapport_plugin::{Customer, Distributor, DistributorStatus, Interaction};
use serde::Deserialize;
use serde_json::Value;
use unicode_normalization::char::decompose_compatible;

/// The policy's configuration (`config.schema.json` describes the same fields for admins).
#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Every distributor needs a sponsor, except `roots` and those `root_roles` create.
    pub require_sponsor: bool,
    /// Distributors that may stay (or become) roots of the tree: the head office's top.
    pub roots: Vec<u64>,
    /// Roles whose writes may create a root or make a distributor one.
    pub root_roles: Vec<String>,
    /// A sponsor must be active to take on recruits (a terminated one never can).
    pub sponsor_must_be_active: bool,
    /// Terminating a distributor who still has recruits.
    pub on_leave_with_downline: Mode,
    /// Only an active distributor takes on customers (a terminated or inactive one never does).
    pub owner_must_be_active: bool,
    /// Moving a customer from one distributor to another.
    pub reassignment: Mode,
    /// Phrases no distributor note or message may contain.
    pub forbidden_claims: Vec<String>,
    /// Distributor attributes checked for forbidden claims.
    pub distributor_fields: Vec<String>,
    /// Customer attributes checked for forbidden claims.
    pub customer_fields: Vec<String>,
    /// Which new interactions have their subject and body checked for forbidden claims.
    pub interactions: InteractionScope,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            require_sponsor: true,
            roots: Vec::new(),
            root_roles: vec!["admin".into(), "owner".into()],
            sponsor_must_be_active: true,
            on_leave_with_downline: Mode::Deny,
            owner_must_be_active: true,
            reassignment: Mode::Warn,
            forbidden_claims: DEFAULT_CLAIMS.iter().map(|c| (*c).to_owned()).collect(),
            distributor_fields: vec!["notes".into()],
            customer_fields: Vec::new(),
            interactions: InteractionScope::Distributor,
        }
    }
}

/// Income and earnings promises that direct-selling codes of conduct (the WFDSA's, Thailand's
/// Direct Sales and Direct Marketing Act) forbid distributors to make.
pub const DEFAULT_CLAIMS: &[&str] = &[
    "guaranteed income",
    "guaranteed returns",
    "guaranteed profit",
    "get rich quick",
    "risk-free income",
    "earn money without working",
    "financial freedom guaranteed",
    "รายได้แน่นอน",
    "รับประกันรายได้",
    "การันตีรายได้",
    "รวยเร็ว",
    "รวยทางลัด",
    "ไม่ต้องทำงานก็รวย",
    "รายได้ไม่อั้น",
];

/// What to do about a write a rule objects to when the organization may tolerate it.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Allow,
    Warn,
    Deny,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InteractionScope {
    /// Every new interaction.
    All,
    /// Interactions with `attributes.distributor` (by a distributor) or about a distributor's
    /// customer.
    Distributor,
    /// None: only distributor and customer fields are checked.
    None,
}

/// What the policy says; `lib.rs` turns it into the contract's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Warn(String),
    Deny { reason: String, field: String },
}

fn deny(reason: impl Into<String>, field: impl Into<String>) -> Verdict {
    Verdict::Deny { reason: reason.into(), field: field.into() }
}

/// The sponsor tree as the policy reads it (the host's store, or a map in tests).
pub trait Tree {
    fn get(&self, id: u64) -> Option<Distributor>;
    /// The distributors this one sponsors directly, whatever their status.
    fn recruits(&self, id: u64) -> Vec<Distributor>;
}

/// How far up the tree a move is checked for a cycle. Each level is one host call (a policy may
/// make 10 000); a deeper tree is still kept acyclic by the host's store.
const MAX_LEVELS: u32 = 5_000;

fn status_name(s: DistributorStatus) -> &'static str {
    match s {
        DistributorStatus::Active => "active",
        DistributorStatus::Inactive => "inactive",
        DistributorStatus::Terminated => "terminated",
    }
}

fn who(d: &Distributor) -> String {
    if d.id == 0 { format!("`{}`", d.name) } else { format!("{} (`{}`)", d.id, d.name) }
}

/// A distributor created or updated: its sponsor, its leaving, its notes.
pub fn distributor(
    config: &Config,
    before: Option<&Distributor>,
    after: &Distributor,
    role: &str,
    tree: &dyn Tree,
) -> Verdict {
    let mut warnings = Vec::new();
    // An unchanged sponsor is not judged again: a root the head office set up before the policy
    // was installed keeps being editable.
    if before.is_none_or(|b| b.sponsor != after.sponsor)
        && let Err(v) = sponsor(config, before, after, role, tree)
    {
        return v;
    }
    let leaving = after.status == DistributorStatus::Terminated
        && before.is_some_and(|b| b.status != DistributorStatus::Terminated);
    if leaving && config.on_leave_with_downline != Mode::Allow {
        // Recruits terminated before keep their sponsor on record but are no downline left hanging.
        let n = tree.recruits(after.id).iter().filter(|r| r.status != DistributorStatus::Terminated).count();
        if n > 0 {
            let text = format!(
                "distributor {} still sponsors {n} distributor(s): terminating them would leave that downline under \
                 a terminated sponsor; move the recruits to another sponsor first (POST …/distributors/{{id}}/move)",
                who(after)
            );
            match config.on_leave_with_downline {
                Mode::Deny => return deny(text, "status"),
                _ => warnings.push(text),
            }
        }
    }
    if let Some(v) = attribute_claims(
        config,
        &config.distributor_fields,
        before.map(|b| b.attributes.as_str()),
        &after.attributes,
        &format!("distributor {}", who(after)),
    ) {
        return v;
    }
    verdict(warnings)
}

/// The rules of a new or changed sponsor; `Err` is the denial.
fn sponsor(
    config: &Config,
    before: Option<&Distributor>,
    after: &Distributor,
    role: &str,
    tree: &dyn Tree,
) -> Result<(), Verdict> {
    let Some(s) = after.sponsor else {
        let may_be_root = !config.require_sponsor
            || (after.id != 0 && config.roots.contains(&after.id))
            || config.root_roles.iter().any(|r| r == role);
        if may_be_root {
            return Ok(());
        }
        let what = if before.is_some() { "would lose its sponsor" } else { "has no sponsor" };
        return Err(deny(
            format!(
                "distributor {} {what}: every distributor is recruited by another distributor of this organization; \
                 set `sponsor` to a distributor id (only {} may add a root, or list it in the policy's `roots`)",
                who(after),
                config.root_roles.join(", ")
            ),
            "sponsor",
        ));
    };
    if after.id != 0 && s == after.id {
        return Err(deny(format!("distributor {} cannot sponsor itself", who(after)), "sponsor"));
    }
    let Some(sp) = tree.get(s) else {
        return Err(deny(
            format!("sponsor {s} is not a distributor of this organization: choose an existing distributor"),
            "sponsor",
        ));
    };
    let inactive = sp.status == DistributorStatus::Inactive && config.sponsor_must_be_active;
    if sp.status == DistributorStatus::Terminated || inactive {
        return Err(deny(
            format!(
                "sponsor {} is {} and cannot take on recruits: choose an active sponsor",
                who(&sp),
                status_name(sp.status)
            ),
            "sponsor",
        ));
    }
    if after.id == 0 {
        return Ok(());
    }
    // Up from the new sponsor: meeting the distributor itself means the sponsor sits in its own
    // downline, and the move would cut both off the tree in a loop.
    let mut levels = 1;
    let mut up = sp.sponsor;
    while let Some(id) = up {
        if id == after.id {
            return Err(deny(
                format!(
                    "moving distributor {} under {} would make a cycle: {} is {levels} level(s) below {} in its own \
                     downline; choose a sponsor outside that downline",
                    who(after),
                    who(&sp),
                    sp.id,
                    after.id
                ),
                "sponsor",
            ));
        }
        levels += 1;
        if levels > MAX_LEVELS {
            break;
        }
        up = tree.get(id).and_then(|d| d.sponsor);
    }
    Ok(())
}

/// A customer created or updated: who owns them, and their checked attributes.
pub fn customer(config: &Config, before: Option<&Customer>, after: &Customer, tree: &dyn Tree) -> Verdict {
    let mut warnings = Vec::new();
    let was = before.and_then(|b| b.distributor);
    if let Some(d) = after.distributor
        && was != Some(d)
    {
        let Some(owner) = tree.get(d) else {
            return deny(
                format!("distributor {d} is not a distributor of this organization: choose an existing distributor"),
                "distributor",
            );
        };
        let inactive = owner.status != DistributorStatus::Active && config.owner_must_be_active;
        if owner.status == DistributorStatus::Terminated || inactive {
            return deny(
                format!(
                    "distributor {} is {}: only an active distributor takes on customers; choose another",
                    who(&owner),
                    status_name(owner.status)
                ),
                "distributor",
            );
        }
        if let Some(previous) = was {
            let text = format!(
                "the customer belongs to distributor {previous}; a customer belongs to one distributor at a time, so \
                 assigning them to {} takes them from {previous}",
                who(&owner)
            );
            match config.reassignment {
                Mode::Allow => {}
                Mode::Warn => warnings.push(text),
                Mode::Deny => {
                    return deny(
                        format!("{text}: reassignment is not allowed here; ask an owner to change the policy"),
                        "distributor",
                    );
                }
            }
        }
    }
    if let Some(v) = attribute_claims(
        config,
        &config.customer_fields,
        before.map(|b| b.attributes.as_str()),
        &after.attributes,
        "the customer",
    ) {
        return v;
    }
    verdict(warnings)
}

/// Whether a new interaction is one whose text this policy checks: `owner` tells whether its
/// customer belongs to a distributor (asked only when needed: it costs a host call).
pub fn checks_interaction(config: &Config, i: &Interaction, owner: impl FnOnce() -> bool) -> bool {
    match config.interactions {
        InteractionScope::All => true,
        InteractionScope::None => false,
        InteractionScope::Distributor => {
            let attributes: Value = serde_json::from_str(&i.attributes).unwrap_or_default();
            attributes.get("distributor").is_some_and(|d| !d.is_null()) || owner()
        }
    }
}

/// A new interaction's subject and body.
pub fn interaction(config: &Config, i: &Interaction) -> Verdict {
    for (field, text) in [("subject", &i.subject), ("body", &i.body)] {
        if let Some(text) = text
            && let Some(found) = find_claim(&config.forbidden_claims, text)
        {
            return deny(found.reason(&format!("the message's {field}")), field);
        }
    }
    Verdict::Allow
}

fn verdict(warnings: Vec<String>) -> Verdict {
    if warnings.is_empty() { Verdict::Allow } else { Verdict::Warn(warnings.join("; ")) }
}

/// Checked attributes that are new or changed (a note already stored was judged when written, or
/// predates the policy: it does not block every other edit).
fn attribute_claims(
    config: &Config,
    fields: &[String],
    before: Option<&str>,
    after: &str,
    whose: &str,
) -> Option<Verdict> {
    let before: Value = before.and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
    let after: Value = serde_json::from_str(after).unwrap_or_default();
    for key in fields {
        let Some(value) = after.get(key) else { continue };
        if before.get(key) == Some(value) {
            continue;
        }
        for text in texts(value) {
            if let Some(found) = find_claim(&config.forbidden_claims, text) {
                return Some(deny(found.reason(&format!("{whose}'s {key}")), format!("attributes.{key}")));
            }
        }
    }
    None
}

/// The strings of an attribute: itself, or those inside a list or an object (notes kept as a
/// list of entries).
fn texts(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s],
        Value::Array(items) => items.iter().flat_map(texts).collect(),
        Value::Object(map) => map.values().flat_map(texts).collect(),
        _ => Vec::new(),
    }
}

/// A forbidden phrase found in a text: the phrase as configured and the text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    pub phrase: &'a str,
    pub excerpt: String,
}

impl Found<'_> {
    fn reason(&self, what: &str) -> String {
        let written =
            if self.excerpt == self.phrase { String::new() } else { format!(" (written \"{}\")", self.excerpt) };
        format!(
            "{what} contains the forbidden claim \"{}\"{written}: income and earnings promises are not allowed; \
             remove or rephrase it",
            self.phrase
        )
    }
}

/// A text prepared for matching: its characters compatibility-decomposed and lower-cased, with
/// spaces, punctuation and invisible characters dropped (so "guaranteed  income",
/// "Guaranteed-Income" and "รายได้ แน่นอน" all match), remembering where each came from.
struct Folded {
    chars: Vec<char>,
    /// Whether a dropped character (a space, punctuation) stood right before this one.
    gap_before: Vec<bool>,
    /// The byte range in the original text of the character this one came from.
    origin: Vec<(usize, usize)>,
}

fn fold(text: &str) -> Folded {
    let mut f = Folded { chars: Vec::new(), gap_before: Vec::new(), origin: Vec::new() };
    let mut gap = false;
    for (at, c) in text.char_indices() {
        let range = (at, at + c.len_utf8());
        decompose_compatible(c, |d| {
            if dropped(d) {
                gap = true;
                return;
            }
            for l in d.to_lowercase() {
                f.chars.push(l);
                f.gap_before.push(std::mem::take(&mut gap));
                f.origin.push(range);
            }
        });
    }
    f
}

fn dropped(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || c.is_control()
        // General punctuation (dashes, quotes, ellipsis), zero-width spaces and joiners, bidi marks.
        || ('\u{2000}'..='\u{206F}').contains(&c)
        || matches!(c, '\u{00A1}' | '\u{00A7}' | '\u{00AB}' | '\u{00AD}' | '\u{00B7}' | '\u{00BB}' | '\u{00BF}')
        || matches!(c, '\u{034F}' | '\u{FEFF}' | '\u{3001}' | '\u{3002}')
}

/// Letters of scripts written with spaces between words: a phrase that starts or ends with one
/// must start or end at a word's edge ("get rich" is not in "budget riches"). Thai, Lao, Khmer,
/// Myanmar and CJK are written without spaces, so there a phrase matches anywhere.
fn spaced(c: char) -> bool {
    let continuous = matches!(c as u32,
        0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF);
    c.is_alphanumeric() && !continuous
}

/// The first configured phrase the text contains, in the configuration's order.
pub fn find_claim<'a>(phrases: &'a [String], text: &str) -> Option<Found<'a>> {
    let folded = fold(text);
    let t = &folded.chars;
    phrases.iter().find_map(|phrase| {
        let p = fold(phrase).chars;
        let (first, last) = (*p.first()?, *p.last()?);
        (0..t.len().checked_sub(p.len() - 1)?).find_map(|start| {
            let end = start + p.len();
            if t[start..end] != p[..] {
                return None;
            }
            let starts_word = !spaced(first) || start == 0 || folded.gap_before[start] || !spaced(t[start - 1]);
            let ends_word = !spaced(last) || end == t.len() || folded.gap_before[end] || !spaced(t[end]);
            (starts_word && ends_word)
                .then(|| Found { phrase, excerpt: text[folded.origin[start].0..folded.origin[end - 1].1].to_owned() })
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn claims() -> Vec<String> {
        Config::default().forbidden_claims
    }

    #[test]
    fn claims_match_whatever_the_case_spacing_and_punctuation() {
        let all = claims();
        let found = find_claim(&all, "Join now: GUARANTEED   Income every month!").unwrap();
        assert_eq!(found.phrase, "guaranteed income");
        assert_eq!(found.excerpt, "GUARANTEED   Income");
        let found = find_claim(&all, "a guaranteed-income\nplan").unwrap();
        assert_eq!((found.phrase, found.excerpt.as_str()), ("guaranteed income", "guaranteed-income"));
        // Full-width letters are the same letters.
        let found = find_claim(&all, "ｇｅｔ ｒｉｃｈ ｑｕｉｃｋ").unwrap();
        assert_eq!(found.phrase, "get rich quick");
        // A phrase split by a line break or a zero-width space still matches.
        assert!(find_claim(&all, "risk\u{200B}free\nincome").is_some());
    }

    #[test]
    fn latin_phrases_match_whole_words_only() {
        let all = claims();
        let phrases = vec!["get rich".to_owned(), "income".to_owned()];
        assert_eq!(find_claim(&phrases, "on budget riches abound"), None);
        assert_eq!(find_claim(&phrases, "incomes vary"), None);
        assert_eq!(find_claim(&phrases, "outcome income"), Some(Found { phrase: "income", excerpt: "income".into() }));
        assert!(find_claim(&phrases, "(get rich)").is_some());
        assert_eq!(find_claim(&all, "Honest advice about income and effort"), None);
    }

    #[test]
    fn thai_claims_match_inside_running_text() {
        let all = claims();
        // Thai has no spaces between words: the phrase matches in the middle of a sentence.
        let found = find_claim(&all, "สมัครวันนี้รับรายได้แน่นอนทุกเดือน").unwrap();
        assert_eq!((found.phrase, found.excerpt.as_str()), ("รายได้แน่นอน", "รายได้แน่นอน"));
        // A space typed inside the phrase does not hide it; the excerpt keeps it.
        let found = find_claim(&all, "ธุรกิจนี้ รวย เร็ว มาก").unwrap();
        assert_eq!((found.phrase, found.excerpt.as_str()), ("รวยเร็ว", "รวย เร็ว"));
        // SARA AM typed as NIKHAHIT + SARA AA is the same text.
        let phrases = vec!["ทำเงิน".to_owned()];
        assert!(find_claim(&phrases, "ท\u{0E4D}\u{0E32}เงินง่าย").is_some());
        assert_eq!(find_claim(&all, "ขอบคุณมากค่ะ บริการดีมาก"), None);
    }

    #[test]
    fn an_empty_or_punctuation_only_phrase_matches_nothing() {
        let all = claims();
        let phrases = vec!["".to_owned(), "!!".to_owned()];
        assert_eq!(find_claim(&phrases, "anything at all!!"), None);
        assert_eq!(find_claim(&all, ""), None);
    }

    struct Map(BTreeMap<u64, Distributor>);

    impl Tree for Map {
        fn get(&self, id: u64) -> Option<Distributor> {
            self.0.get(&id).cloned()
        }
        fn recruits(&self, id: u64) -> Vec<Distributor> {
            self.0.values().filter(|d| d.sponsor == Some(id)).cloned().collect()
        }
    }

    fn d(id: u64, sponsor: Option<u64>, status: DistributorStatus) -> Distributor {
        Distributor { id, name: format!("D{id}"), sponsor, rank: None, status, branch: None, attributes: "{}".into() }
    }

    use DistributorStatus::{Active, Inactive, Terminated};

    /// 1 ─ 2 ─ 3 ─ 4, 1 ─ 5 (terminated), 1 ─ 6 (inactive), 7 (a root).
    fn tree() -> Map {
        Map(BTreeMap::from([
            (1, d(1, None, Active)),
            (2, d(2, Some(1), Active)),
            (3, d(3, Some(2), Active)),
            (4, d(4, Some(3), Active)),
            (5, d(5, Some(1), Terminated)),
            (6, d(6, Some(1), Inactive)),
            (7, d(7, None, Active)),
        ]))
    }

    fn denied_field(v: &Verdict) -> Option<(&str, &str)> {
        match v {
            Verdict::Deny { reason, field } => Some((reason, field)),
            _ => None,
        }
    }

    #[test]
    fn a_new_distributor_needs_an_active_sponsor_of_the_organization() {
        let (c, t) = (Config::default(), tree());
        assert_eq!(distributor(&c, None, &d(0, Some(2), Active), "manager", &t), Verdict::Allow);
        let v = distributor(&c, None, &d(0, None, Active), "manager", &t);
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "sponsor");
        assert!(reason.contains("`D0` has no sponsor") && reason.contains("admin, owner"), "{reason}");
        // Owners may add a root; so may anyone once the policy does not require sponsors.
        assert_eq!(distributor(&c, None, &d(0, None, Active), "owner", &t), Verdict::Allow);
        let free = Config { require_sponsor: false, ..Config::default() };
        assert_eq!(distributor(&free, None, &d(0, None, Active), "agent", &t), Verdict::Allow);
        let v = distributor(&c, None, &d(0, Some(99), Active), "owner", &t);
        assert!(denied_field(&v).unwrap().0.contains("sponsor 99 is not a distributor of this organization"));
        let v = distributor(&c, None, &d(0, Some(5), Active), "owner", &t);
        assert!(denied_field(&v).unwrap().0.contains("sponsor 5 (`D5`) is terminated"), "{v:?}");
        let v = distributor(&c, None, &d(0, Some(6), Active), "owner", &t);
        assert!(denied_field(&v).unwrap().0.contains("is inactive"), "{v:?}");
        let lenient = Config { sponsor_must_be_active: false, ..Config::default() };
        assert_eq!(distributor(&lenient, None, &d(0, Some(6), Active), "owner", &t), Verdict::Allow);
        // A terminated sponsor never recruits, whatever the configuration.
        assert!(denied_field(&distributor(&lenient, None, &d(0, Some(5), Active), "owner", &t)).is_some());
    }

    #[test]
    fn a_move_into_its_own_downline_or_under_itself_is_denied() {
        let (c, t) = (Config::default(), tree());
        let two = t.get(2).unwrap();
        let v = distributor(&c, Some(&two), &d(2, Some(4), Active), "owner", &t);
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "sponsor");
        assert!(reason.contains("would make a cycle: 4 is 2 level(s) below 2"), "{reason}");
        let v = distributor(&c, Some(&two), &d(2, Some(2), Active), "owner", &t);
        assert!(denied_field(&v).unwrap().0.contains("cannot sponsor itself"), "{v:?}");
        // Elsewhere in the tree (the downline moves along), or under another root: allowed.
        assert_eq!(distributor(&c, Some(&two), &d(2, Some(7), Active), "manager", &t), Verdict::Allow);
        let three = t.get(3).unwrap();
        assert_eq!(distributor(&c, Some(&three), &d(3, Some(1), Active), "manager", &t), Verdict::Allow);
        // Cutting a distributor loose from its sponsor is making a root.
        let v = distributor(&c, Some(&three), &d(3, None, Active), "manager", &t);
        assert!(denied_field(&v).unwrap().0.contains("would lose its sponsor"), "{v:?}");
        let rooted = Config { roots: vec![3], ..Config::default() };
        assert_eq!(distributor(&rooted, Some(&three), &d(3, None, Active), "manager", &t), Verdict::Allow);
    }

    #[test]
    fn an_unchanged_sponsor_is_not_judged_again() {
        let (c, t) = (Config::default(), tree());
        // Root 7 (set up before the policy) gets a new rank from a manager: allowed.
        let seven = t.get(7).unwrap();
        let promoted = Distributor { rank: Some("gold".into()), ..seven.clone() };
        assert_eq!(distributor(&c, Some(&seven), &promoted, "manager", &t), Verdict::Allow);
    }

    #[test]
    fn terminating_a_distributor_with_recruits_is_denied_or_warned_per_config() {
        let t = tree();
        let three = t.get(3).unwrap();
        let leave = d(3, Some(2), Terminated);
        let v = distributor(&Config::default(), Some(&three), &leave, "owner", &t);
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "status");
        assert!(reason.contains("still sponsors 1 distributor(s)"), "{reason}");
        let warn = Config { on_leave_with_downline: Mode::Warn, ..Config::default() };
        assert!(matches!(distributor(&warn, Some(&three), &leave, "owner", &t), Verdict::Warn(_)));
        let allow = Config { on_leave_with_downline: Mode::Allow, ..Config::default() };
        assert_eq!(distributor(&allow, Some(&three), &leave, "owner", &t), Verdict::Allow);
        // A leaf leaves freely.
        let four = t.get(4).unwrap();
        assert_eq!(
            distributor(&Config::default(), Some(&four), &d(4, Some(3), Terminated), "owner", &t),
            Verdict::Allow
        );
    }

    #[test]
    fn recruits_terminated_before_do_not_hold_their_sponsor() {
        let mut t = tree();
        // 1 sponsors 2 (active), 5 (terminated) and 6 (inactive): two recruits still count.
        let one = t.get(1).unwrap();
        let v = distributor(&Config::default(), Some(&one), &d(1, None, Terminated), "owner", &t);
        assert!(denied_field(&v).unwrap().0.contains("still sponsors 2 distributor(s)"), "{v:?}");
        // 3's only recruit, 4, left earlier: 3 may leave too.
        t.0.insert(4, d(4, Some(3), Terminated));
        let three = t.get(3).unwrap();
        assert_eq!(
            distributor(&Config::default(), Some(&three), &d(3, Some(2), Terminated), "owner", &t),
            Verdict::Allow
        );
    }

    #[test]
    fn notes_with_a_forbidden_claim_are_denied_quoting_it() {
        let (c, t) = (Config::default(), tree());
        let mut new = d(0, Some(1), Active);
        new.attributes = r#"{"notes": "Tell recruits: รายได้แน่นอน 50,000 บาท"}"#.into();
        let v = distributor(&c, None, &new, "owner", &t);
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "attributes.notes");
        assert!(reason.contains("contains the forbidden claim \"รายได้แน่นอน\""), "{reason}");
        // Notes kept as a list are checked entry by entry.
        new.attributes = r#"{"notes": ["met at the fair", "said: get rich quick!"]}"#.into();
        assert!(denied_field(&distributor(&c, None, &new, "owner", &t)).unwrap().0.contains("\"get rich quick\""));
        // Other attributes are not checked unless configured; an old note does not block a move.
        new.attributes = r#"{"motto": "guaranteed income"}"#.into();
        assert_eq!(distributor(&c, None, &new, "owner", &t), Verdict::Allow);
        let mut stored = d(4, Some(3), Active);
        stored.attributes = r#"{"notes": "guaranteed income"}"#.into();
        let moved = Distributor { sponsor: Some(2), ..stored.clone() };
        assert_eq!(distributor(&c, Some(&stored), &moved, "owner", &t), Verdict::Allow);
    }

    fn customer_of(distributor: Option<u64>) -> Customer {
        Customer {
            id: 10,
            name: Some("Malee".into()),
            email: None,
            phone: None,
            branch: None,
            distributor,
            external_ids: Vec::new(),
            tags: Vec::new(),
            consents: Vec::new(),
            attributes: "{}".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn a_customer_belongs_to_one_active_distributor() {
        let (c, t) = (Config::default(), tree());
        assert_eq!(customer(&c, None, &customer_of(Some(2)), &t), Verdict::Allow);
        assert_eq!(customer(&c, None, &customer_of(None), &t), Verdict::Allow);
        let v = customer(&c, None, &customer_of(Some(5)), &t);
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "distributor");
        assert!(reason.contains("5 (`D5`) is terminated"), "{reason}");
        assert!(denied_field(&customer(&c, None, &customer_of(Some(6)), &t)).is_some());
        assert!(denied_field(&customer(&c, None, &customer_of(Some(99)), &t)).unwrap().0.contains("99 is not"));
        // Moving from 2 to 3 warns by default, is denied or allowed per config.
        let before = customer_of(Some(2));
        let v = customer(&c, Some(&before), &customer_of(Some(3)), &t);
        assert!(matches!(&v, Verdict::Warn(w) if w.contains("belongs to distributor 2")), "{v:?}");
        let strict = Config { reassignment: Mode::Deny, ..Config::default() };
        assert!(denied_field(&customer(&strict, Some(&before), &customer_of(Some(3)), &t)).is_some());
        // Keeping a distributor that was terminated since is not a new assignment.
        let kept = customer_of(Some(5));
        let renamed = Customer { name: Some("Malee S.".into()), ..kept.clone() };
        assert_eq!(customer(&c, Some(&kept), &renamed, &t), Verdict::Allow);
        // Releasing a customer is allowed.
        assert_eq!(customer(&strict, Some(&before), &customer_of(None), &t), Verdict::Allow);
    }

    fn message(subject: Option<&str>, body: Option<&str>, attributes: &str) -> Interaction {
        Interaction {
            id: 0,
            customer: 10,
            kind: rapport_plugin::InteractionKind::Chat,
            channel: "line".into(),
            source: "api".into(),
            external_id: None,
            occurred_at: 0,
            amount: None,
            subject: subject.map(Into::into),
            body: body.map(Into::into),
            attributes: attributes.into(),
            ticket: None,
        }
    }

    #[test]
    fn messages_by_or_about_distributors_are_checked() {
        let c = Config::default();
        let by = message(None, Some("hi"), r#"{"distributor": 2}"#);
        assert!(checks_interaction(&c, &by, || false));
        let other = message(None, Some("hi"), "{}");
        assert!(!checks_interaction(&c, &other, || false));
        assert!(checks_interaction(&c, &other, || true), "a distributor's customer");
        let all = Config { interactions: InteractionScope::All, ..Config::default() };
        assert!(checks_interaction(&all, &other, || false));
        let none = Config { interactions: InteractionScope::None, ..Config::default() };
        assert!(!checks_interaction(&none, &by, || true));

        let v = interaction(&c, &message(Some("Opportunity"), Some("Work from home, GET RICH QUICK."), "{}"));
        let (reason, field) = denied_field(&v).unwrap();
        assert_eq!(field, "body");
        assert!(reason.contains("\"get rich quick\" (written \"GET RICH QUICK\")"), "{reason}");
        let v = interaction(&c, &message(Some("การันตีรายได้!"), None, "{}"));
        assert_eq!(denied_field(&v).unwrap().1, "subject");
        assert_eq!(interaction(&c, &message(Some("Follow-up"), Some("Thanks for your order"), "{}")), Verdict::Allow);
    }

    #[test]
    fn the_default_configuration_parses_from_an_empty_object() {
        let config: Config = serde_json::from_str("{}").unwrap();
        assert!(config.forbidden_claims.iter().any(|c| c == "รายได้แน่นอน"));
        assert_eq!(config.reassignment, Mode::Warn);
        let config: Config =
            serde_json::from_str(r#"{"forbidden_claims": ["double your money"], "reassignment": "deny"}"#).unwrap();
        assert_eq!(config.forbidden_claims, vec!["double your money"]);
        assert!(serde_json::from_str::<Config>(r#"{"reassignment": "maybe"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"unknown": 1}"#).is_err());
    }
}
