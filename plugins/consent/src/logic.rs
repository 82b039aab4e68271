//! The policy's logic over plain values, so that it is unit-tested natively: which purpose an
//! interaction serves, and whether a customer's consents permit it on a channel.

use std::collections::BTreeMap;

use rapport_plugin::{Consent, Customer, Interaction, InteractionKind, LawfulBasis};
use serde::Deserialize;

/// The policy's configuration (`config.schema.json` describes the same fields for admins).
#[derive(Deserialize, Debug, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Purpose → the lawful bases that permit it. Purposes not listed are not judged.
    pub purposes: BTreeMap<String, Vec<Basis>>,
    /// The purpose that marketing channels, kinds and tags stand for.
    pub marketing_purpose: String,
    /// Channels on which outreach is marketing whatever its attributes say.
    pub marketing_channels: Vec<String>,
    /// Interaction kinds that are always marketing.
    pub marketing_kinds: Vec<String>,
    /// Tag → channel: adding the tag enrols the customer in marketing on that channel.
    pub marketing_tags: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        // PDPA s. 24 / GDPR art. 6: direct marketing needs the person's consent; serving a
        // customer may also rest on the contract or the organization's legitimate interest.
        let purposes = BTreeMap::from([
            ("marketing".to_owned(), vec![Basis::Consent]),
            ("service".to_owned(), vec![Basis::Consent, Basis::Contract, Basis::LegitimateInterest]),
        ]);
        Config {
            purposes,
            marketing_purpose: "marketing".into(),
            marketing_channels: Vec::new(),
            marketing_kinds: Vec::new(),
            marketing_tags: BTreeMap::new(),
        }
    }
}

/// A lawful basis as the configuration spells it (the contract's enum is not `Deserialize`).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    Consent,
    Contract,
    LegalObligation,
    VitalInterest,
    PublicTask,
    LegitimateInterest,
}

impl Basis {
    pub fn of(basis: LawfulBasis) -> Basis {
        match basis {
            LawfulBasis::Consent => Basis::Consent,
            LawfulBasis::Contract => Basis::Contract,
            LawfulBasis::LegalObligation => Basis::LegalObligation,
            LawfulBasis::VitalInterest => Basis::VitalInterest,
            LawfulBasis::PublicTask => Basis::PublicTask,
            LawfulBasis::LegitimateInterest => Basis::LegitimateInterest,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Basis::Consent => "consent",
            Basis::Contract => "contract",
            Basis::LegalObligation => "legal-obligation",
            Basis::VitalInterest => "vital-interest",
            Basis::PublicTask => "public-task",
            Basis::LegitimateInterest => "legitimate-interest",
        }
    }
}

/// The kind's name as the API spells it ("email", or the organization's own kind).
pub fn kind_name(kind: &InteractionKind) -> &str {
    match kind {
        InteractionKind::Purchase => "purchase",
        InteractionKind::Call => "call",
        InteractionKind::Email => "email",
        InteractionKind::Chat => "chat",
        InteractionKind::Ticket => "ticket",
        InteractionKind::Visit => "visit",
        InteractionKind::Other(k) => k,
    }
}

/// The purpose an interaction serves, if it is one this policy enforces.
///
/// An explicit `attributes.purpose` wins (any kind: the organization said what it is for). Then
/// a kind configured as marketing, then a marketing channel — except for purchases and tickets,
/// which the customer initiates, so a purchase over "sms" is not a campaign.
pub fn purpose_of(config: &Config, interaction: &Interaction) -> Option<String> {
    let attributes: serde_json::Value = serde_json::from_str(&interaction.attributes).unwrap_or_default();
    let kind = kind_name(&interaction.kind);
    let purpose = match attributes.get("purpose").and_then(|p| p.as_str()).map(str::trim) {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ if config.marketing_kinds.iter().any(|k| k == kind) => config.marketing_purpose.clone(),
        _ if !matches!(interaction.kind, InteractionKind::Purchase | InteractionKind::Ticket)
            && config.marketing_channels.iter().any(|c| c == &interaction.channel) =>
        {
            config.marketing_purpose.clone()
        }
        _ => return None,
    };
    config.purposes.contains_key(&purpose).then_some(purpose)
}

/// Whether the customer's consents permit `purpose` on a channel (`channels`: the names the
/// channel goes by — an interaction's channel and its kind, so that a consent for "call" covers a
/// call logged on channel "phone"). `Err` is the sentence a denial carries.
///
/// The newest matching consent (by `given_at`; a later entry wins a tie) decides, as the contract
/// says: a consent without a channel covers every channel, so a newer general withdrawal
/// overrides an older channel consent and vice versa. Withdrawal blocks at once, whatever the
/// basis; a consent on a basis the organization does not accept for the purpose permits nothing.
pub fn permits(consents: &[Consent], purpose: &str, channels: &[&str], bases: &[Basis]) -> Result<(), String> {
    let channel = channels.first().copied().unwrap_or_default();
    let newest = consents
        .iter()
        .filter(|c| c.purpose == purpose && c.channel.as_deref().is_none_or(|ch| channels.contains(&ch)))
        .reduce(|newest, c| if c.given_at >= newest.given_at { c } else { newest });
    let accepted = || bases.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ");
    let Some(consent) = newest else {
        return Err(format!(
            "the customer has no consent for {purpose} on channel {channel}: record one (basis: {}) before \
             contacting them for {purpose}",
            accepted()
        ));
    };
    let on = consent.channel.as_deref().map_or("every channel".to_owned(), |c| format!("channel {c}"));
    if let Some(at) = consent.withdrawn_at {
        return Err(format!(
            "the customer withdrew their consent for {purpose} on {on} on {}: they may not be contacted for \
             {purpose} on channel {channel}",
            date(at)
        ));
    }
    let basis = Basis::of(consent.basis);
    if !bases.contains(&basis) {
        return Err(format!(
            "the customer's {purpose} consent on {on} rests on {}, which does not permit {purpose} (accepted: {})",
            basis.name(),
            accepted()
        ));
    }
    Ok(())
}

/// Adding a marketing tag enrols the customer: judged against the consents as written, so that
/// a write that records the consent and adds the tag together lands. Tags the customer already
/// had are not judged again (a later withdrawal does not make every other edit fail). `Err` is
/// the denial's sentence.
pub fn tags(config: &Config, before: Option<&Customer>, after: &Customer) -> Result<(), String> {
    let had = |tag: &String| before.is_some_and(|b| b.tags.contains(tag));
    let purpose = &config.marketing_purpose;
    for tag in after.tags.iter().filter(|t| !had(t)) {
        let Some(channel) = config.marketing_tags.get(tag) else { continue };
        permits(&after.consents, purpose, &[channel], &config.purposes[purpose])
            .map_err(|reason| format!("tag `{tag}` enrols the customer in {purpose} on {channel}, but {reason}"))?;
    }
    Ok(())
}

/// A timestamp as a UTC date, `YYYY-MM-DD` (shared with the other standard plugins).
pub use plugin_kit::date;

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(purpose: &str, channel: Option<&str>, basis: LawfulBasis, given_at: i64) -> Consent {
        Consent {
            purpose: purpose.into(),
            channel: channel.map(Into::into),
            basis,
            given_at,
            withdrawn_at: None,
            source: "web-form".into(),
        }
    }

    fn interaction(kind: InteractionKind, channel: &str, attributes: &str) -> Interaction {
        Interaction {
            id: 0,
            customer: 1,
            kind,
            channel: channel.into(),
            source: "api".into(),
            external_id: None,
            occurred_at: 0,
            amount: None,
            subject: None,
            body: None,
            attributes: attributes.into(),
            ticket: None,
        }
    }

    const MARKETING: &[Basis] = &[Basis::Consent];

    #[test]
    fn the_purpose_comes_from_attributes_then_kinds_then_channels() {
        let config = Config {
            marketing_channels: vec!["sms".into()],
            marketing_kinds: vec!["campaign".into()],
            ..Config::default()
        };
        let purpose = |kind, channel, attributes| purpose_of(&config, &interaction(kind, channel, attributes));
        assert_eq!(
            purpose(InteractionKind::Email, "email", r#"{"purpose":"marketing"}"#).as_deref(),
            Some("marketing")
        );
        assert_eq!(purpose(InteractionKind::Call, "phone", r#"{"purpose":"service"}"#).as_deref(), Some("service"));
        // Explicit attributes win over the channel; a purpose nobody configured is not judged.
        assert_eq!(purpose(InteractionKind::Chat, "sms", r#"{"purpose":"service"}"#).as_deref(), Some("service"));
        assert_eq!(purpose(InteractionKind::Email, "email", r#"{"purpose":"billing"}"#), None);
        assert_eq!(purpose(InteractionKind::Call, "phone", "{}"), None);
        assert_eq!(purpose(InteractionKind::Chat, "sms", "{}").as_deref(), Some("marketing"));
        assert_eq!(purpose(InteractionKind::Other("campaign".into()), "web", "{}").as_deref(), Some("marketing"));
        // The customer's own purchases and tickets are not campaigns, whatever their channel.
        assert_eq!(purpose(InteractionKind::Purchase, "sms", "{}"), None);
        assert_eq!(purpose(InteractionKind::Ticket, "sms", "{}"), None);
        // Malformed attributes are no purpose rather than a failure.
        assert_eq!(purpose(InteractionKind::Email, "email", "not json"), None);
    }

    #[test]
    fn a_valid_consent_for_the_purpose_and_channel_permits() {
        let email = [consent("marketing", Some("email"), LawfulBasis::Consent, 10)];
        assert_eq!(permits(&email, "marketing", &["email", "email"], MARKETING), Ok(()));
        // A consent without a channel covers every channel; one for "call" covers a call on "phone".
        let all = [consent("marketing", None, LawfulBasis::Consent, 10)];
        assert_eq!(permits(&all, "marketing", &["sms", "chat"], MARKETING), Ok(()));
        let call = [consent("marketing", Some("call"), LawfulBasis::Consent, 10)];
        assert_eq!(permits(&call, "marketing", &["phone", "call"], MARKETING), Ok(()));
    }

    #[test]
    fn no_consent_for_the_purpose_or_channel_is_refused_naming_both() {
        let email = [consent("marketing", Some("email"), LawfulBasis::Consent, 10)];
        let err = permits(&email, "marketing", &["sms", "chat"], MARKETING).unwrap_err();
        assert!(err.contains("no consent for marketing on channel sms"), "{err}");
        let err = permits(&email, "profiling", &["email"], MARKETING).unwrap_err();
        assert!(err.contains("no consent for profiling on channel email"), "{err}");
        assert!(permits(&[], "marketing", &["email"], MARKETING).is_err());
    }

    #[test]
    fn withdrawal_blocks_at_once_and_the_newest_consent_decides() {
        let mut withdrawn = consent("marketing", Some("email"), LawfulBasis::Consent, 10);
        withdrawn.withdrawn_at = Some(1_700_000_000_000);
        let err = permits(std::slice::from_ref(&withdrawn), "marketing", &["email"], MARKETING).unwrap_err();
        assert!(err.contains("withdrew their consent for marketing on channel email on 2023-11-14"), "{err}");
        // Given again later: the newer consent permits.
        let again = [withdrawn.clone(), consent("marketing", Some("email"), LawfulBasis::Consent, 20)];
        assert_eq!(permits(&again, "marketing", &["email"], MARKETING), Ok(()));
        // A newer withdrawal of the all-channel consent overrides an older email consent.
        let mut general = consent("marketing", None, LawfulBasis::Consent, 30);
        general.withdrawn_at = Some(40);
        let both = [consent("marketing", Some("email"), LawfulBasis::Consent, 20), general];
        assert!(permits(&both, "marketing", &["email"], MARKETING).is_err());
    }

    #[test]
    fn only_the_configured_bases_count() {
        let contract = [consent("marketing", None, LawfulBasis::Contract, 10)];
        let err = permits(&contract, "marketing", &["email"], MARKETING).unwrap_err();
        assert!(err.contains("rests on contract, which does not permit marketing (accepted: consent)"), "{err}");
        let service = Config::default().purposes["service"].clone();
        let contract = [consent("service", None, LawfulBasis::Contract, 10)];
        assert_eq!(permits(&contract, "service", &["phone"], &service), Ok(()));
    }

    #[test]
    fn only_newly_added_marketing_tags_need_a_consent_for_their_channel() {
        let config =
            Config { marketing_tags: BTreeMap::from([("newsletter".into(), "email".into())]), ..Config::default() };
        let customer = |tags: &[&str], consents: Vec<Consent>| Customer {
            id: 1,
            name: None,
            email: None,
            phone: None,
            branch: None,
            distributor: None,
            external_ids: Vec::new(),
            tags: tags.iter().map(|t| (*t).into()).collect(),
            consents,
            attributes: "{}".into(),
            created_at: 0,
            updated_at: 0,
        };
        let email = || vec![consent("marketing", Some("email"), LawfulBasis::Consent, 10)];
        let err = tags(&config, None, &customer(&["vip", "newsletter"], Vec::new())).unwrap_err();
        assert!(err.starts_with("tag `newsletter` enrols the customer in marketing on email, but"), "{err}");
        // Recorded in the same write: allowed. Other tags are not judged.
        assert_eq!(tags(&config, None, &customer(&["newsletter"], email())), Ok(()));
        assert_eq!(tags(&config, None, &customer(&["vip"], Vec::new())), Ok(()));
        // Already there before: another edit of the customer is not refused for it.
        let before = customer(&["newsletter"], email());
        assert_eq!(tags(&config, Some(&before), &customer(&["newsletter"], Vec::new())), Ok(()));
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_700_000_000_000), "2023-11-14");
        assert_eq!(date(951_782_400_000), "2000-02-29");
        assert_eq!(date(-86_400_000), "1969-12-31");
    }

    #[test]
    fn the_default_configuration_parses_from_an_empty_object() {
        let config: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(config.purposes["marketing"], vec![Basis::Consent]);
        let config: Config =
            serde_json::from_str(r#"{"purposes": {"marketing": ["consent", "legitimate-interest"]}}"#).unwrap();
        assert_eq!(config.purposes.len(), 1, "the organization's purposes replace the defaults");
        assert!(serde_json::from_str::<Config>(r#"{"purposes": {"x": ["maybe"]}}"#).is_err());
    }
}
