//! Reporter: a campaign's target list. The customers of a segment (a label value, a filter, or
//! both) whose consent permits `purpose` — marketing by default — on `channel`, with the address
//! the channel reaches them at and their branch: a table to export as CSV (`?format=csv`).
//!
//! Consent is judged by the consent policy's own rule (its `logic.rs`, compiled in as
//! `consent_rules`), on the channel and the campaign's interaction kind as the policy judges a
//! message, so with the same `purposes` setting the list holds no one the policy would then refuse.

// The consent policy's logic, shared by path rather than copied: it is plain Rust over the
// contract's types, which every world's bindings define alike. This reporter uses only
// `permits`, `Basis` and the default purposes.
#[path = "../../consent/src/logic.rs"]
#[allow(dead_code)]
mod consent_rules;
mod logic;

use logic::{Config, Target};
use rapport_plugin::{Cell, ColumnType, PluginError, Report, ReportColumn, Reporter, log, store};
use serde::Deserialize;

rapport_plugin::config_schema!("../config.schema.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The channel of the campaign ("email", "sms", ...).
    channel: String,
    /// The kind of interaction the campaign logs ("call", "email", ...). The consent policy
    /// judges an interaction on its channel and its kind, so a consent for "call" covers a call
    /// logged on channel "phone": given here, the list counts it the same way.
    #[serde(default)]
    kind: Option<String>,
    /// The purpose the consent must permit.
    #[serde(default = "marketing")]
    purpose: String,
    /// A value of the configured segment label ("at-risk").
    #[serde(default)]
    segment: Option<String>,
    /// Customers matching this filter (the filter language of the customer list).
    #[serde(default)]
    filter: String,
}

fn marketing() -> String {
    "marketing".into()
}

fn param(message: impl Into<String>, name: &str) -> PluginError {
    PluginError::field(format!("params.{name}: {}", message.into()), format!("params.{name}"))
}

struct CampaignTargets;

impl Reporter for CampaignTargets {
    fn run(params: String) -> Result<Report, PluginError> {
        let config: Config = rapport_plugin::config()?;
        let params: Params = serde_json::from_str(&params).map_err(|e| {
            let hint = if e.to_string().contains("missing field `channel`") {
                "params.channel is required: the channel the campaign uses (email, sms, ...)".to_owned()
            } else {
                format!("invalid params: {e}")
            };
            PluginError::field(hint, "params")
        })?;
        let channel = params.channel.trim();
        if channel.is_empty() {
            return Err(param("the channel the campaign uses must not be empty (email, sms, ...)", "channel"));
        }
        let kind = params.kind.as_deref().map(str::trim);
        if kind.is_some_and(str::is_empty) {
            return Err(param(
                "the kind of interaction must not be empty (call, email, ...): give one, or leave it out",
                "kind",
            ));
        }
        if !config.purposes.contains_key(&params.purpose) {
            let known: Vec<&str> = config.purposes.keys().map(String::as_str).collect();
            return Err(param(
                format!("`{}` is not a configured purpose (configured: {})", params.purpose, known.join(", ")),
                "purpose",
            ));
        }
        if params.segment.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(param(
                "an empty segment matches no one: give a value of the segment label, or leave it out",
                "segment",
            ));
        }
        let filter = logic::filter(&config, &params.filter, params.segment.as_deref());

        let (mut rows, mut refused, mut no_address) = (Vec::new(), 0u64, 0u64);
        let mut cursor = None;
        loop {
            let page = store::query_customers(&filter, cursor.as_deref(), 500).map_err(|e| {
                // The segment's part of the filter is ours; the rest is the caller's.
                param(e, if params.filter.trim().is_empty() { "segment" } else { "filter" })
            })?;
            for c in &page.items {
                match logic::target(&config, c, &params.purpose, channel, kind) {
                    Target::Reach(address) => rows.push(vec![
                        Cell::Integer(c.id as i64),
                        c.name.clone().map_or(Cell::Null, Cell::Text),
                        Cell::Text(channel.to_owned()),
                        address.map_or(Cell::Null, Cell::Text),
                        c.branch.clone().map_or(Cell::Null, Cell::Text),
                    ]),
                    Target::NoAddress => no_address += 1,
                    Target::Refused(_) => refused += 1,
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        log!(Info, "{} targets; {refused} without a valid consent, {no_address} without an address", rows.len());
        let column = ReportColumn::new;
        Ok(Report {
            title: Some(format!(
                "{} on {channel}: {} customers ({refused} left out for consent, {no_address} for no address)",
                params.purpose,
                rows.len()
            )),
            columns: vec![
                column("customer", ColumnType::Integer),
                column("name", ColumnType::Text),
                column("channel", ColumnType::Text),
                column("address", ColumnType::Text),
                column("branch", ColumnType::Text),
            ],
            rows,
            chart: None,
        })
    }
}

rapport_plugin::export_reporter!(CampaignTargets);
