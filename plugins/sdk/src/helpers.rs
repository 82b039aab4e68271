//! Conveniences shared by every world: logging, typed configuration, JSON attributes, errors.

use serde::de::DeserializeOwned;

use crate::bindings::rapport::plugin::{config, log as wit_log};
use crate::{Customer, Decision, Denial, Entity, FieldPatch, PluginError};

pub use crate::bindings::rapport::plugin::log::Level;

/// Write a line to the plugin's execution trace.
pub fn log(level: Level, message: &str) {
    wit_log::log(level, message);
}

/// `log!(Info, "scored {} customers", n)`: a formatted line in the execution trace.
#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log($crate::Level::$level, &::std::format!($($arg)*))
    };
}

/// The plugin's configuration, parsed into the author's type.
///
/// Missing fields take their `#[serde(default)]`; a field of the wrong type is an error that
/// names it, so the organization's admin sees which setting to fix.
pub fn config<T: DeserializeOwned>() -> Result<T, PluginError> {
    let text = config::get();
    serde_json::from_str(&text).map_err(|e| PluginError::config(format!("invalid configuration: {e}")))
}

/// The raw configuration JSON.
pub fn config_json() -> String {
    config::get()
}

impl PluginError {
    /// An error that is not about one field.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError { message: message.into(), field: None }
    }

    /// An error about the plugin's configuration.
    pub fn config(message: impl Into<String>) -> Self {
        PluginError { message: message.into(), field: Some("config".into()) }
    }

    /// An error about one field of the input.
    pub fn field(message: impl Into<String>, field: impl Into<String>) -> Self {
        PluginError { message: message.into(), field: Some(field.into()) }
    }
}

impl Decision {
    /// Deny the write, naming the field the reason is about.
    pub fn deny(reason: impl Into<String>, field: impl Into<String>) -> Self {
        Decision::Deny(Denial { reason: reason.into(), field: Some(field.into()) })
    }

    /// Deny the write for a reason that is not about one field.
    pub fn deny_reason(reason: impl Into<String>) -> Self {
        Decision::Deny(Denial { reason: reason.into(), field: None })
    }

    /// Overwrite one field: `Decision::patch("email", &"a@b.com")`.
    pub fn patch(field: impl Into<String>, value: &impl serde::Serialize) -> Self {
        Decision::Patch(vec![FieldPatch::new(field, value)])
    }
}

impl FieldPatch {
    pub fn new(field: impl Into<String>, value: &impl serde::Serialize) -> Self {
        FieldPatch {
            field: field.into(),
            value: serde_json::to_string(value).expect("a serde value serializes to JSON"),
        }
    }
}

/// Typed access to the JSON attributes every record carries.
pub trait Attributes {
    /// The raw JSON object text.
    fn attributes_json(&self) -> &str;

    /// One attribute, parsed; `None` when it is missing, `null` or of another type.
    fn attr<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(self.attributes_json()).ok()?;
        serde_json::from_value(object.get(key)?.clone()).ok()
    }
}

macro_rules! impl_attributes {
    ($($t:ty),*) => {$(
        impl Attributes for $t {
            fn attributes_json(&self) -> &str {
                &self.attributes
            }
        }
    )*};
}
impl_attributes!(crate::Customer, crate::Interaction, crate::Distributor, crate::Branch);

impl crate::Change {
    /// The customer as it will be stored, when the change creates or updates a customer.
    pub fn after_customer(&self) -> Option<&Customer> {
        match &self.after {
            Some(Entity::Customer(c)) => Some(c),
            _ => None,
        }
    }

    /// The customer as it was stored, when the change updates or deletes a customer.
    pub fn before_customer(&self) -> Option<&Customer> {
        match &self.before {
            Some(Entity::Customer(c)) => Some(c),
            _ => None,
        }
    }

    /// The interaction being written, if the change is about one.
    pub fn after_interaction(&self) -> Option<&crate::Interaction> {
        match &self.after {
            Some(Entity::Interaction(i)) => Some(i),
            _ => None,
        }
    }

    /// The distributor being written, if the change is about one.
    pub fn after_distributor(&self) -> Option<&crate::Distributor> {
        match &self.after {
            Some(Entity::Distributor(d)) => Some(d),
            _ => None,
        }
    }

    /// Whether an update changed this top-level field.
    pub fn changed(&self, field: &str) -> bool {
        self.changed_fields.iter().any(|f| f == field)
    }
}

impl crate::Customer {
    /// Whether the customer holds a consent, not withdrawn, for this purpose on this channel.
    pub fn has_consent(&self, purpose: &str, channel: &str) -> bool {
        self.consents
            .iter()
            .rev()
            .find(|c| c.purpose == purpose && c.channel.as_deref().is_none_or(|ch| ch == channel))
            .is_some_and(|c| c.withdrawn_at.is_none())
    }
}

impl crate::FeatureBatch {
    /// The feature column of this name (as declared in `ScorerSpec::features`).
    pub fn column(&self, name: &str) -> Result<&[f64], PluginError> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.values.as_slice())
            .ok_or_else(|| PluginError::new(format!("the host sent no feature column `{name}`")))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Called by the export macros on entry: a panic's message goes to the trace as an error line
/// before the instance traps (plugins have no stderr the host reads).
#[doc(hidden)]
pub fn __init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| wit_log::log(Level::Error, &format!("panic: {info}"))));
    });
}

/// Ship a JSON Schema for the plugin's configuration inside the component (the
/// `rapport:config-schema` custom section). The host checks every configuration an organization
/// sets against it and refuses a bad one with the path of the bad field, before the plugin ever
/// runs with it.
///
/// ```ignore
/// rapport_plugin::config_schema!("../config.schema.json");
/// ```
#[macro_export]
macro_rules! config_schema {
    ($path:literal) => {
        const _: () = {
            const SCHEMA: &[u8] = include_bytes!($path);
            #[used]
            #[unsafe(link_section = "rapport:config-schema")]
            static CONFIG_SCHEMA: [u8; SCHEMA.len()] = {
                let mut out = [0u8; SCHEMA.len()];
                let mut i = 0;
                while i < SCHEMA.len() {
                    out[i] = SCHEMA[i];
                    i += 1;
                }
                out
            };
        };
    };
}

impl crate::ReportColumn {
    /// A report column: `ReportColumn::new("customers", ColumnType::Integer)`.
    pub fn new(name: impl Into<String>, type_: crate::ColumnType) -> Self {
        crate::ReportColumn { name: name.into(), type_ }
    }
}

impl crate::Aggregation {
    /// One summary of a field per group: `Aggregation::of(AggregateOp::Sum, "purchases.total_minor")`.
    pub fn of(op: crate::AggregateOp, field: impl Into<String>) -> Self {
        crate::Aggregation { op, field: Some(field.into()) }
    }
}
