//! Who is a target, over plain values, unit-tested natively: the consent rule is the consent
//! policy's own (`consent_rules`, compiled from `plugins/consent/src/logic.rs`, so the list and the
//! policy that later judges the campaign's messages agree as long as their `purposes` settings
//! do); this file adds the address a channel needs and the segment filter.

use std::collections::BTreeMap;

use rapport_plugin::Customer;
use serde::Deserialize;

use crate::consent_rules::{self, Basis};

/// Which address a channel reaches a customer at.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Address {
    Email,
    Phone,
}

/// The reporter's configuration (`config.schema.json` describes the same fields for admins).
#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The label whose values name segments: `<plugin>.<label>`.
    pub segment_label: String,
    /// Purpose → the lawful bases that permit it: the consent policy's setting of the same name.
    pub purposes: BTreeMap<String, Vec<Basis>>,
    /// Channel → the address it uses. A channel not listed needs no address of the customer's
    /// (the organization reaches them some other way, e.g. a LINE account it holds).
    pub addresses: BTreeMap<String, Address>,
}

impl Default for Config {
    fn default() -> Self {
        let addresses = [
            ("email", Address::Email),
            ("sms", Address::Phone),
            ("call", Address::Phone),
            ("phone", Address::Phone),
            ("whatsapp", Address::Phone),
        ];
        Config {
            segment_label: "rfm.segment".into(),
            purposes: consent_rules::Config::default().purposes,
            addresses: addresses.into_iter().map(|(c, a)| (c.to_owned(), a)).collect(),
        }
    }
}

/// A customer the campaign may reach, and where.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Permitted, at this address (none for a channel that needs none).
    Reach(Option<String>),
    /// Permitted, but the customer has no address for the channel.
    NoAddress,
    /// Not permitted: the consent policy's reason.
    Refused(String),
}

/// Whether the consent policy would let a message for `purpose` reach the customer on `channel`
/// (the newest consent for the purpose and channel decides; a consent without a channel covers
/// every channel; withdrawn or on an unaccepted basis, it permits nothing), and the address.
/// `kind` is the kind of interaction the campaign logs: the policy names a message's channel by
/// its channel and its kind, so a consent for "call" also covers channel "phone".
pub fn target(config: &Config, customer: &Customer, purpose: &str, channel: &str, kind: Option<&str>) -> Target {
    let bases = config.purposes.get(purpose).map(Vec::as_slice).unwrap_or_default();
    let channels: Vec<&str> = [Some(channel), kind].into_iter().flatten().collect();
    if let Err(reason) = consent_rules::permits(&customer.consents, purpose, &channels, bases) {
        return Target::Refused(reason);
    }
    let address = match config.addresses.get(channel) {
        None => return Target::Reach(None),
        Some(Address::Email) => &customer.email,
        Some(Address::Phone) => &customer.phone,
    };
    match address.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => Target::Reach(Some(a.to_owned())),
        None => Target::NoAddress,
    }
}

/// The customer filter: the caller's, and the segment's label when one is asked for.
pub fn filter(config: &Config, filter: &str, segment: Option<&str>) -> String {
    let mut parts = Vec::new();
    if !filter.trim().is_empty() {
        parts.push(format!("({filter})"));
    }
    if let Some(segment) = segment {
        let quoted = segment.replace('\\', "\\\\").replace('"', "\\\"");
        parts.push(format!("label.{} = \"{quoted}\"", config.segment_label));
    }
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_plugin::{Consent, LawfulBasis};

    fn customer(consents: Vec<Consent>, email: Option<&str>) -> Customer {
        Customer {
            id: 1,
            name: Some("Suda".into()),
            email: email.map(Into::into),
            phone: Some("+66812345678".into()),
            branch: None,
            distributor: None,
            external_ids: Vec::new(),
            tags: Vec::new(),
            consents,
            attributes: "{}".into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn consent(channel: Option<&str>, basis: LawfulBasis, given_at: i64, withdrawn_at: Option<i64>) -> Consent {
        Consent {
            purpose: "marketing".into(),
            channel: channel.map(Into::into),
            basis,
            given_at,
            withdrawn_at,
            source: "web-form".into(),
        }
    }

    #[test]
    fn the_consent_policys_rule_decides() {
        let config = Config::default();
        let mail = Some("suda@example.com");
        let c = customer(vec![consent(Some("email"), LawfulBasis::Consent, 10, None)], mail);
        assert_eq!(target(&config, &c, "marketing", "email", None), Target::Reach(Some("suda@example.com".into())));
        assert!(
            matches!(target(&config, &c, "marketing", "sms", None), Target::Refused(r) if r.contains("no consent for marketing on channel sms"))
        );
        // A newer general withdrawal overrides the channel's consent.
        let c = customer(
            vec![
                consent(Some("email"), LawfulBasis::Consent, 10, None),
                consent(None, LawfulBasis::Consent, 20, Some(30)),
            ],
            mail,
        );
        assert!(
            matches!(target(&config, &c, "marketing", "email", None), Target::Refused(r) if r.contains("withdrew"))
        );
        // A general consent covers every channel; SMS goes to the phone.
        let c = customer(vec![consent(None, LawfulBasis::Consent, 10, None)], None);
        assert_eq!(target(&config, &c, "marketing", "sms", None), Target::Reach(Some("+66812345678".into())));
        assert_eq!(target(&config, &c, "marketing", "email", None), Target::NoAddress);
        assert_eq!(target(&config, &c, "marketing", "line", None), Target::Reach(None));
        // Legitimate interest does not permit marketing by default.
        let c = customer(vec![consent(None, LawfulBasis::LegitimateInterest, 10, None)], mail);
        assert!(
            matches!(target(&config, &c, "marketing", "email", None), Target::Refused(r) if r.contains("rests on legitimate-interest"))
        );
        // A purpose without accepted bases permits nothing.
        assert!(matches!(target(&config, &c, "surveys", "email", None), Target::Refused(_)));
    }

    #[test]
    fn the_kind_names_the_channel_as_the_consent_policy_does() {
        let config = Config::default();
        // A consent for calls, and a campaign of calls logged on channel "phone".
        let c = customer(vec![consent(Some("call"), LawfulBasis::Consent, 10, None)], None);
        assert_eq!(target(&config, &c, "marketing", "phone", Some("call")), Target::Reach(Some("+66812345678".into())));
        assert!(
            matches!(target(&config, &c, "marketing", "phone", None), Target::Refused(r) if r.contains("no consent for marketing on channel phone"))
        );
        assert!(matches!(target(&config, &c, "marketing", "phone", Some("email")), Target::Refused(_)));
        // A newer withdrawal for the kind overrides the channel's consent, as in the policy.
        let c = customer(
            vec![
                consent(Some("phone"), LawfulBasis::Consent, 10, None),
                consent(Some("call"), LawfulBasis::Consent, 20, Some(30)),
            ],
            None,
        );
        assert_eq!(target(&config, &c, "marketing", "phone", None), Target::Reach(Some("+66812345678".into())));
        assert!(
            matches!(target(&config, &c, "marketing", "phone", Some("call")), Target::Refused(r) if r.contains("withdrew"))
        );
    }

    #[test]
    fn the_filter_adds_the_quoted_segment() {
        let config = Config::default();
        assert_eq!(filter(&config, "", None), "");
        assert_eq!(filter(&config, "branch = \"bkk-01\"", None), "(branch = \"bkk-01\")");
        assert_eq!(
            filter(&config, "branch = \"bkk-01\"", Some("at \"risk\"")),
            "(branch = \"bkk-01\") and label.rfm.segment = \"at \\\"risk\\\"\""
        );
    }
}
