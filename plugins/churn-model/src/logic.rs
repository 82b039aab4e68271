//! Churn risk over plain values, unit-tested natively: the lexicon sentiment of a text, the
//! factors of one customer, and the logistic model that weighs them.

use serde::Deserialize;

/// Milliseconds per day.
pub const DAY_MS: f64 = 86_400_000.0;

/// The scorer's configuration (`config.schema.json` describes the same fields for admins).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The weights used when the model is not fitted: `fit.enabled` off, or too few labelled
    /// customers (see [`FitConfig`]).
    pub weights: Weights,
    pub fit: FitConfig,
    /// A customer is `medium` from this probability and `high` from `high_from`.
    pub medium_from: f64,
    pub high_from: f64,
    /// Recency counts up to this many days: past it, a customer is simply long gone, and one
    /// outlier should not saturate the score by itself.
    pub recency_cap_days: f64,
    /// "Recent tickets" are those opened within this many days before the scoring time.
    pub ticket_window_days: f64,
    /// Purchase days within this many days before the scoring time are the `purchases` factor.
    pub purchase_window_days: f64,
    /// The sentiment is the mean over this many of the newest interactions with text.
    pub sentiment_interactions: usize,
    /// How many of the newest interactions are read per customer (the host caps it at 500).
    /// Tickets and texts older than these are not seen.
    pub timeline_limit: u32,
    pub lexicon: Lexicon,
    /// Return a sentence per customer naming each factor's contribution.
    pub explain: bool,
}

/// Log-odds weights: `z = intercept + Σ weight × factor`, probability = 1 / (1 + e^−z).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub intercept: f64,
    /// Per 30 days since the last purchase (or the last interaction, for someone who never bought).
    pub recency_per_30_days: f64,
    pub open_tickets: f64,
    /// Open tickets past their due time count here on top of `open_tickets`.
    pub overdue_tickets: f64,
    pub recent_tickets: f64,
    /// Times the negated sentiment (−1 very positive … +1 very negative).
    pub negative_sentiment: f64,
    /// Per purchase day within `purchase_window_days`. 0 by default: the hand-set model predates
    /// the factor; a fitted model weighs it (usually below 0: frequent buyers stay).
    pub purchases: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            intercept: -3.0,
            recency_per_30_days: 0.5,
            open_tickets: 0.4,
            overdue_tickets: 0.8,
            recent_tickets: 0.3,
            negative_sentiment: 1.5,
            purchases: 0.0,
        }
    }
}

/// Words that make an interaction's text positive or negative. Words of letters and digits only
/// (English) match whole words, case-insensitively; any other term (Thai, written without spaces
/// between words) matches as a substring. Longer terms are matched first and consume their text,
/// so `ไม่พอใจ` (dissatisfied) is not also read as `พอใจ` (satisfied).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Lexicon {
    pub positive: Vec<String>,
    pub negative: Vec<String>,
    /// Words that count for nothing but hold a sentiment term inside them, so that the substring
    /// match of Thai does not read `เช้า` (morning) as `ช้า` (slow): matched before any shorter
    /// term (and before a sentiment term of the same length) and consumed.
    pub neutral: Vec<String>,
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| (*w).to_owned()).collect()
}

impl Default for Lexicon {
    fn default() -> Self {
        Lexicon {
            positive: words(&[
                "thank",
                "thanks",
                "great",
                "good",
                "happy",
                "love",
                "excellent",
                "perfect",
                "satisfied",
                "helpful",
                "ขอบคุณ",
                "ดีมาก",
                "ประทับใจ",
                "พอใจ",
                "ชอบ",
                "เยี่ยม",
            ]),
            negative: words(&[
                "refund",
                "cancel",
                "complaint",
                "complain",
                "angry",
                "bad",
                "broken",
                "late",
                "problem",
                "terrible",
                "worst",
                "disappointed",
                "unhappy",
                "slow",
                "ผิดหวัง",
                "แย่",
                "ช้า",
                "ยกเลิก",
                "คืนเงิน",
                "ไม่พอใจ",
                "โกรธ",
                "เสีย",
            ]),
            neutral: words(&[
                "เช้า",     // morning, holds ช้า (slow)
                "ช้าง",     // elephant, holds ช้า
                "รับผิดชอบ", // responsible, holds ชอบ (like)
                "เสียง",    // sound, voice, holds เสีย (broken)
                "แย่ง",     // to grab, snatch, holds แย่ (bad)
            ]),
        }
    }
}

/// How the weights are fitted to the organization's own history: each customer's factors as of
/// `cutoff`, labelled "churned" when they made no purchase in the `horizon_days` after it, and
/// an L2-regularized logistic regression over those (see [`crate::fit`]).
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// Fit the weights (true) or use `weights` as given (false).
    pub enabled: bool,
    /// `YYYY-MM-DD` (UTC, the start of the day); default `horizon_days` before the scoring time,
    /// the latest cutoff whose horizon has fully passed.
    pub cutoff: Option<String>,
    pub horizon_days: f64,
    /// λ of the penalty λ/2 · Σ β² on the standardized factors' coefficients (not the intercept).
    pub l2: f64,
    /// Below this many labelled customers (or 20 of either class) the documented `weights` are
    /// used: a regression on a handful of customers is noise.
    pub min_labelled: usize,
    /// The share of labelled customers held out (by a hash of the id) to measure the fit.
    pub holdout: f64,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig { enabled: true, cutoff: None, horizon_days: 90.0, l2: 1.0, min_labelled: 500, holdout: 0.2 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            weights: Weights::default(),
            fit: FitConfig::default(),
            medium_from: 0.3,
            high_from: 0.6,
            recency_cap_days: 365.0,
            ticket_window_days: 90.0,
            purchase_window_days: 365.0,
            sentiment_interactions: 5,
            timeline_limit: 50,
            lexicon: Lexicon::default(),
            explain: false,
        }
    }
}

impl Config {
    /// What the schema cannot say: the thresholds' order. `Err` is (message, field).
    pub fn check(&self) -> Result<(), (String, &'static str)> {
        if !(0.0 < self.medium_from && self.medium_from <= self.high_from && self.high_from < 1.0) {
            return Err((
                format!(
                    "the thresholds must satisfy 0 < medium_from ≤ high_from < 1 (got {} and {})",
                    self.medium_from, self.high_from
                ),
                "config.medium_from",
            ));
        }
        if let Some(c) = &self.fit.cutoff
            && plugin_kit::parse_time_text(c).is_err()
        {
            return Err((format!("fit.cutoff `{c}` is not a YYYY-MM-DD date"), "config.fit.cutoff"));
        }
        if !(self.fit.l2 > 0.0 && self.fit.horizon_days > 0.0 && (0.0..1.0).contains(&self.fit.holdout)) {
            return Err(("fit needs l2 > 0, horizon_days > 0 and 0 ≤ holdout < 1".into(), "config.fit"));
        }
        Ok(())
    }

    /// The cutoff instant (ms) for a scoring time `now`.
    pub fn cutoff(&self, now: i64) -> i64 {
        match self.fit.cutoff.as_deref().map(plugin_kit::parse_time_text) {
            Some(Ok(ms)) => ms,
            _ => now - self.horizon_ms(),
        }
    }

    pub fn horizon_ms(&self) -> i64 {
        (self.fit.horizon_days * DAY_MS) as i64
    }
}

/// What a lexicon term says about a text. The order is the matching order among terms of the
/// same length: a neutral word goes before a sentiment term as long as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tone {
    Neutral,
    Positive,
    Negative,
}

/// Positive and negative lexicon hits in a text.
pub fn hits(lexicon: &Lexicon, text: &str) -> (u32, u32) {
    let mut rest = text.to_lowercase();
    let lists =
        [(&lexicon.neutral, Tone::Neutral), (&lexicon.positive, Tone::Positive), (&lexicon.negative, Tone::Negative)];
    let mut terms: Vec<(String, Tone)> = lists
        .into_iter()
        .flat_map(|(list, tone)| list.iter().map(move |t| (t.trim().to_lowercase(), tone)))
        .filter(|(t, _)| !t.is_empty())
        .collect();
    terms.sort_by_key(|(t, tone)| (std::cmp::Reverse(t.chars().count()), *tone));
    let (mut pos, mut neg) = (0, 0);
    for (term, tone) in terms {
        let n = if term.chars().all(char::is_alphanumeric) && term.is_ascii() {
            rest.split(|c: char| !c.is_alphanumeric()).filter(|w| *w == term).count()
        } else {
            let n = rest.matches(term.as_str()).count();
            if n > 0 {
                // Consumed: a shorter term inside it must not match again.
                rest = rest.replace(term.as_str(), " ");
            }
            n
        };
        match tone {
            Tone::Neutral => {}
            Tone::Positive => pos += n as u32,
            Tone::Negative => neg += n as u32,
        }
    }
    (pos, neg)
}

/// A text's sentiment, −1 (only negative words) to +1 (only positive): (pos − neg) / (pos + neg),
/// 0 for a text with no lexicon word.
pub fn sentiment(lexicon: &Lexicon, text: &str) -> f64 {
    let (pos, neg) = hits(lexicon, text);
    if pos + neg == 0 { 0.0 } else { (f64::from(pos) - f64::from(neg)) / f64::from(pos + neg) }
}

/// Ticket state of one interaction, as the factors need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketSeen {
    pub occurred_at: i64,
    /// Open or pending: not closed.
    pub open: bool,
    pub due_at: Option<i64>,
    /// When it was closed: a ticket closed after the time the factors are for was open then
    /// (the fit reads factors as of a past cutoff).
    pub closed_at: Option<i64>,
}

/// One interaction from the timeline, reduced to what the factors read.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub occurred_at: i64,
    /// Where the interaction came from: `plugin:<name>` for a plugin's follow-up (an escalation
    /// task of the service-standard policy is a ticket), which is not the customer's doing.
    pub source: String,
    /// Subject and body, joined; empty when the interaction has neither.
    pub text: String,
    pub ticket: Option<TicketSeen>,
    /// A purchase (for the `purchases` factor and the fit's label).
    pub purchase: bool,
}

/// A customer's factors, before weighing.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Days since the last purchase (or last interaction), uncapped; NaN without any.
    pub recency_days: f64,
    pub open_tickets: f64,
    pub overdue_tickets: f64,
    pub recent_tickets: f64,
    /// Mean sentiment of the newest interactions with text; NaN when none has text.
    pub sentiment: f64,
    /// How many texts the sentiment is the mean of.
    pub texts: usize,
    /// Distinct purchase days within `purchase_window_days`, among the newest interactions read.
    pub purchases: f64,
}

/// The factors from the host's features (last purchase and last interaction times, NaN when none)
/// and the customer's newest interactions (newest first), as of `now`. Interactions after `now`
/// are ignored, so a rescore at a given time means the same whenever it runs; so are plugins'
/// follow-ups (source `plugin:…`): an escalation task is the organization's ticket, not a
/// complaint of the customer's, and its text is not theirs.
pub fn factors(config: &Config, now: i64, last_purchase: f64, last_interaction: f64, timeline: &[Seen]) -> Factors {
    let last = if last_purchase.is_finite() { last_purchase } else { last_interaction };
    let recency_days = if last.is_finite() { ((now as f64 - last) / DAY_MS).max(0.0).floor() } else { f64::NAN };
    let since = now as f64 - config.ticket_window_days * DAY_MS;
    let seen: Vec<&Seen> =
        timeline.iter().filter(|s| s.occurred_at <= now && !s.source.starts_with("plugin:")).collect();
    let tickets = seen.iter().filter_map(|s| s.ticket.as_ref());
    let (mut open, mut overdue, mut recent) = (0.0, 0.0, 0.0);
    for t in tickets {
        if t.open || t.closed_at.is_some_and(|c| c > now) {
            open += 1.0;
            if t.due_at.is_some_and(|d| d < now) {
                overdue += 1.0;
            }
        }
        if t.occurred_at as f64 >= since {
            recent += 1.0;
        }
    }
    let texts: Vec<f64> = seen
        .iter()
        .filter(|s| !s.text.trim().is_empty())
        .take(config.sentiment_interactions)
        .map(|s| sentiment(&config.lexicon, &s.text))
        .collect();
    let mean = if texts.is_empty() { f64::NAN } else { texts.iter().sum::<f64>() / texts.len() as f64 };
    let window = now as f64 - config.purchase_window_days * DAY_MS;
    let mut days: Vec<i64> = seen
        .iter()
        .filter(|s| s.purchase && s.occurred_at as f64 > window)
        .map(|s| s.occurred_at.div_euclid(DAY_MS as i64))
        .collect();
    days.dedup();
    Factors {
        recency_days,
        open_tickets: open,
        overdue_tickets: overdue,
        recent_tickets: recent,
        sentiment: mean,
        texts: texts.len(),
        purchases: days.len() as f64,
    }
}

/// The factors as the model weighs them, in the order of [`FACTORS`] (and of the weights after
/// the intercept): recency in 30-day units, capped; the ticket counts; the negated sentiment
/// (0 without text); purchase days.
pub fn row(config: &Config, f: &Factors) -> [f64; FACTORS] {
    [
        f.recency_days.min(config.recency_cap_days) / 30.0,
        f.open_tickets,
        f.overdue_tickets,
        f.recent_tickets,
        if f.sentiment.is_nan() { 0.0 } else { -f.sentiment },
        f.purchases,
    ]
}

/// The factors' names, as in the weights and the `contribution_<factor>` scores.
pub const FACTORS: usize = 6;
pub const FACTOR_NAMES: [&str; FACTORS] =
    ["recency", "open_tickets", "overdue_tickets", "recent_tickets", "sentiment", "purchases"];

impl Weights {
    /// Intercept first, then one weight per factor of [`row`].
    pub fn to_array(&self) -> [f64; FACTORS + 1] {
        [
            self.intercept,
            self.recency_per_30_days,
            self.open_tickets,
            self.overdue_tickets,
            self.recent_tickets,
            self.negative_sentiment,
            self.purchases,
        ]
    }

    pub fn from_array(w: [f64; FACTORS + 1]) -> Weights {
        Weights {
            intercept: w[0],
            recency_per_30_days: w[1],
            open_tickets: w[2],
            overdue_tickets: w[3],
            recent_tickets: w[4],
            negative_sentiment: w[5],
            purchases: w[6],
        }
    }
}

/// A customer's risk: the probability, and each factor's contribution to the log-odds.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    pub probability: f64,
    /// The log-odds each factor of [`FACTOR_NAMES`] adds.
    pub contributions: [f64; FACTORS],
    /// An index into `LABELS`.
    pub label: usize,
}

/// The label's categories; the last is for customers with nothing to score.
pub const LABELS: [&str; 4] = ["low", "medium", "high", "no-activity"];

/// Weigh the factors; `None` for a customer with no interaction at all.
pub fn risk(config: &Config, f: &Factors) -> Option<Risk> {
    if f.recency_days.is_nan() {
        return None;
    }
    let w = config.weights.to_array();
    let x = row(config, f);
    let contributions: [f64; FACTORS] = std::array::from_fn(|k| w[k + 1] * x[k]);
    let z = w[0] + contributions.iter().sum::<f64>();
    let probability = 1.0 / (1.0 + (-z).exp());
    let label = if probability >= config.high_from {
        2
    } else if probability >= config.medium_from {
        1
    } else {
        0
    };
    Some(Risk { probability, contributions, label })
}

/// One sentence: the probability and label, then each factor with its contribution, largest first,
/// the intercept, and where the weights come from (`source`: "default weights", or the fit).
pub fn explain(config: &Config, f: &Factors, r: &Risk, source: &str) -> String {
    let plural = |n: f64, one: &str, many: &str| if n == 1.0 { one.to_owned() } else { many.to_owned() };
    let describe = [
        format!("{} {} since the last activity", f.recency_days, plural(f.recency_days, "day", "days")),
        format!("{} open {}", f.open_tickets, plural(f.open_tickets, "ticket", "tickets")),
        format!("{} overdue", f.overdue_tickets),
        format!(
            "{} {} in {} days",
            f.recent_tickets,
            plural(f.recent_tickets, "ticket", "tickets"),
            config.ticket_window_days
        ),
        if f.sentiment.is_nan() {
            "no text to read sentiment from".to_owned()
        } else {
            format!(
                "sentiment {:+.2} over the last {} {}",
                f.sentiment,
                f.texts,
                plural(f.texts as f64, "text", "texts")
            )
        },
        format!(
            "{} purchase {} in {} days",
            f.purchases,
            plural(f.purchases, "day", "days"),
            config.purchase_window_days
        ),
    ];
    let mut order: Vec<usize> = (0..FACTORS).collect();
    order.sort_by(|&a, &b| r.contributions[b].abs().total_cmp(&r.contributions[a].abs()));
    let parts: Vec<String> = order.iter().map(|&k| format!("{} {:+.2}", describe[k], r.contributions[k])).collect();
    format!(
        "churn risk {:.2} ({}): {}; base {:+.2} ({source})",
        r.probability,
        LABELS[r.label],
        parts.join(", "),
        config.weights.intercept
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: i64, text: &str, ticket: Option<TicketSeen>) -> Seen {
        Seen { occurred_at: at, source: "api".into(), text: text.into(), ticket, purchase: false }
    }

    #[test]
    fn english_matches_whole_words_and_thai_substrings() {
        let lex = Lexicon::default();
        assert_eq!(hits(&lex, "Wants a refund"), (0, 1));
        assert_eq!(hits(&lex, "Happy with the product, THANKS!"), (2, 0));
        // "badge" is not "bad"; "lately" is not "late".
        assert_eq!(hits(&lex, "lost my badge lately"), (0, 0));
        assert_eq!(hits(&lex, "ขอบคุณมากค่ะ บริการดีมาก"), (2, 0));
        // ไม่พอใจ (dissatisfied) is one negative hit, not also พอใจ (satisfied).
        assert_eq!(hits(&lex, "ลูกค้าไม่พอใจมาก"), (0, 1));
        assert_eq!(hits(&lex, "พอใจ แต่ส่งช้า"), (1, 1));
        assert_eq!(sentiment(&lex, "Asked about delivery"), 0.0);
        assert_eq!(sentiment(&lex, "great but late, broken"), -1.0 / 3.0);
    }

    #[test]
    fn thai_words_holding_a_sentiment_term_count_for_nothing() {
        let lex = Lexicon::default();
        // เช้า (morning) holds ช้า (slow), ช้าง (elephant) too; รับผิดชอบ (responsible) holds ชอบ
        // (like); แย่ง (grab) holds แย่ (bad); เสียง (voice) holds เสีย (broken).
        assert_eq!(hits(&lex, "ส่งของตอนเช้า"), (0, 0));
        assert_eq!(hits(&lex, "ซื้อตุ๊กตาช้าง"), (0, 0));
        assert_eq!(hits(&lex, "พนักงานรับผิดชอบงาน"), (0, 0));
        assert_eq!(hits(&lex, "ลูกค้าแย่งกันซื้อ"), (0, 0));
        assert_eq!(hits(&lex, "โทรมาเสียงไม่ชัด"), (0, 0));
        // The words themselves still count, beside the neutral ones.
        assert_eq!(hits(&lex, "สั่งตอนเช้า แต่ส่งช้า"), (0, 1));
        assert_eq!(hits(&lex, "ชอบพนักงานที่รับผิดชอบ"), (1, 0));
        assert_eq!(hits(&lex, "เสียงดี แต่เครื่องเสีย"), (0, 1));
        // The list is the organization's: without it, the substring match reads เช้า as slow.
        let bare = Lexicon { neutral: Vec::new(), ..Lexicon::default() };
        assert_eq!(hits(&bare, "ส่งของตอนเช้า"), (0, 1));
        let custom: Lexicon = serde_json::from_str(r#"{"neutral": ["ช้าง"]}"#).unwrap();
        assert_eq!((hits(&custom, "ช้าง"), hits(&custom, "เช้า")), ((0, 0), (0, 1)));
        // A sentiment term longer than a neutral word inside it still counts.
        let noisy = Lexicon { negative: vec!["เสียงดัง".into()], ..Lexicon::default() };
        assert_eq!(hits(&noisy, "ห้องเสียงดังมาก"), (0, 1));
    }

    #[test]
    fn plugins_follow_ups_are_not_the_customers_tickets() {
        let config = Config::default();
        let day = DAY_MS as i64;
        let now = 1_000 * day;
        let overdue =
            Some(TicketSeen { occurred_at: now - 5 * day, open: true, due_at: Some(now - day), closed_at: None });
        let mut task = seen(now - day, "Overdue ticket #1: refund. Contact the customer", overdue.clone());
        task.source = "plugin:service-standard".into();
        let ticket = seen(now - 5 * day, "Happy", overdue);
        let f = factors(&config, now, f64::NAN, (now - day) as f64, &[task.clone(), ticket]);
        assert_eq!((f.open_tickets, f.overdue_tickets, f.recent_tickets), (1.0, 1.0, 1.0));
        assert_eq!((f.sentiment, f.texts), (1.0, 1));
        let f = factors(&config, now, f64::NAN, (now - day) as f64, &[task]);
        assert_eq!((f.open_tickets, f.overdue_tickets, f.recent_tickets, f.texts), (0.0, 0.0, 0.0, 0));
    }

    #[test]
    fn the_factors_read_tickets_and_the_newest_texts() {
        let config = Config { sentiment_interactions: 2, ..Config::default() };
        let now = 1_000 * DAY_MS as i64;
        let day = DAY_MS as i64;
        let open =
            |at: i64, due: i64| Some(TicketSeen { occurred_at: at, open: true, due_at: Some(due), closed_at: None });
        let closed = |at: i64| Some(TicketSeen { occurred_at: at, open: false, due_at: None, closed_at: Some(at) });
        let timeline = [
            seen(now + day, "refund", None), // after `now`: not seen
            seen(now - day, "Happy", open(now - day, now + day)),
            seen(now - 2 * day, "", None),
            seen(now - 10 * day, "refund please", open(now - 10 * day, now - 8 * day)),
            seen(now - 200 * day, "terrible", closed(now - 200 * day)),
        ];
        let f = factors(&config, now, (now - 40 * day) as f64, (now - day) as f64, &timeline);
        assert_eq!(f.recency_days, 40.0);
        assert_eq!((f.open_tickets, f.overdue_tickets, f.recent_tickets), (2.0, 1.0, 2.0));
        // The two newest texts: +1 and −1.
        assert_eq!((f.sentiment, f.texts), (0.0, 2));
        // Never bought: recency from the last interaction; nothing at all: no recency.
        assert_eq!(factors(&config, now, f64::NAN, (now - 3 * day) as f64, &[]).recency_days, 3.0);
        let none = factors(&config, now, f64::NAN, f64::NAN, &[]);
        assert!(none.recency_days.is_nan() && none.sentiment.is_nan());
        assert_eq!(risk(&config, &none), None);

        // Purchase days within the window (two purchases on one day count once), and a ticket
        // closed after `now` counts as open then: the fit reads factors as of a past cutoff.
        let buy = |at: i64| Seen { purchase: true, ..seen(at, "", None) };
        let later = Some(TicketSeen {
            occurred_at: now - 3 * day,
            open: false,
            due_at: Some(now - 2 * day),
            closed_at: Some(now + day),
        });
        let timeline = [
            buy(now - day + 1_000),
            buy(now - day),
            seen(now - 3 * day, "", later),
            buy(now - 30 * day),
            buy(now - 400 * day),
        ];
        let f = factors(&config, now, (now - day) as f64, (now - day) as f64, &timeline);
        assert_eq!(f.purchases, 2.0);
        assert_eq!((f.open_tickets, f.overdue_tickets, f.recent_tickets), (1.0, 1.0, 1.0));
        // Scored after it closed, the same ticket is closed.
        let f = factors(&config, now + 2 * day, (now - day) as f64, (now - day) as f64, &timeline);
        assert_eq!(f.open_tickets, 0.0);
    }

    #[test]
    fn the_probability_is_the_logistic_of_the_contributions() {
        let config = Config::default();
        let f = Factors {
            recency_days: 600.0,
            open_tickets: 1.0,
            overdue_tickets: 1.0,
            recent_tickets: 2.0,
            sentiment: -0.5,
            texts: 2,
            purchases: 3.0,
        };
        let r = risk(&config, &f).unwrap();
        // Recency is capped at 365 days: 0.5 × 365 / 30; purchases weigh 0 by default.
        assert_eq!(r.contributions, [0.5 * 365.0 / 30.0, 0.4, 0.8, 0.6, 0.75, 0.0]);
        let z = -3.0 + r.contributions.iter().sum::<f64>();
        assert_eq!(r.probability, 1.0 / (1.0 + (-z).exp()));
        assert_eq!(LABELS[r.label], "high");
        // A fresh, happy customer is low risk.
        let happy = Factors {
            recency_days: 3.0,
            open_tickets: 0.0,
            overdue_tickets: 0.0,
            recent_tickets: 0.0,
            sentiment: 1.0,
            texts: 1,
            purchases: 0.0,
        };
        let r2 = risk(&config, &happy).unwrap();
        assert!(r2.probability < 0.05, "{}", r2.probability);
        assert_eq!(LABELS[r2.label], "low");
        let why = explain(&config, &f, &r, "default weights");
        assert!(
            why.starts_with(&format!("churn risk {:.2} (high): 600 days since the last activity +6.08", r.probability)),
            "{why}"
        );
        assert!(why.contains("sentiment -0.50 over the last 2 texts +0.75"), "{why}");
        assert!(why.ends_with("base -3.00 (default weights)"), "{why}");
    }

    #[test]
    fn labels_follow_the_thresholds() {
        let config = Config { medium_from: 0.2, high_from: 0.5, ..Config::default() };
        let at = |days: f64| {
            let f = Factors {
                recency_days: days,
                open_tickets: 0.0,
                overdue_tickets: 0.0,
                recent_tickets: 0.0,
                sentiment: f64::NAN,
                texts: 0,
                purchases: 0.0,
            };
            LABELS[risk(&config, &f).unwrap().label]
        };
        // z = −3 + days/60: p = 0.2 at z = −1.386 (97 days), p = 0.5 at z = 0 (180 days).
        assert_eq!(at(90.0), "low");
        assert_eq!(at(100.0), "medium");
        assert_eq!(at(180.0), "high");
        assert!(Config { medium_from: 0.7, high_from: 0.5, ..Config::default() }.check().is_err());
        assert!(Config::default().check().is_ok());
    }
}
