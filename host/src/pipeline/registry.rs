//! Each organization's plugins: install (a new version of) a component, enable, disable, order,
//! configure, fail open or closed, roll back, shadow. Every change is audited and swaps the
//! organization's loaded set for a new one, so calls in flight finish on the old one.
//!
//! A plugin's configuration is checked against the JSON Schema its component ships in the
//! `rapport:config-schema` custom section (see the SDK's `config_schema!`), when it ships one.

use serde::Serialize;
use serde_json::Value;

use super::{Pipeline, PipelineError, Result};
use crate::model::Actor;
use crate::store::{FailureMode, NewComponent, OrgStore, PluginRow, VersionRow, no_plugin};

/// A configuration its plugin's schema refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[error("the configuration is invalid at `{path}`: {message}")]
pub struct ConfigError {
    /// JSON Pointer to the bad field (`/welcome_tag`); empty for the whole object.
    pub path: String,
    pub message: String,
}

/// A plugin version as listed: the stored row and whether it is the active or shadow one.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    #[serde(flatten)]
    pub version: VersionRow,
    pub active: bool,
    pub shadow: bool,
}

/// Plugin names appear in URLs, score keys (`<plugin>.<score>`) and traces.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(PipelineError::Invalid(format!(
            "`{name}` is not a valid plugin name: use 1 to 64 lower-case letters, digits, `-` or `_`, starting with a \
             letter or digit"
        )))
    }
}

/// Check a configuration against a schema (`None`: the plugin declares none; any object goes).
pub fn validate_config(schema: Option<&str>, config: &Value) -> Result<(), ConfigError> {
    if !config.is_object() {
        return Err(ConfigError {
            path: String::new(),
            message: "a plugin's configuration must be a JSON object".into(),
        });
    }
    let Some(schema) = schema else { return Ok(()) };
    let schema: Value = serde_json::from_str(schema).map_err(|e| ConfigError {
        path: String::new(),
        message: format!("the plugin's own config schema is not JSON ({e}); ask its author for a fixed version"),
    })?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| ConfigError {
        path: String::new(),
        message: format!("the plugin's own config schema is invalid ({e}); ask its author for a fixed version"),
    })?;
    match validator.iter_errors(config).next() {
        Some(e) => Err(ConfigError { path: e.instance_path.to_string(), message: e.to_string() }),
        None => Ok(()),
    }
}

impl Pipeline {
    /// Install a component as a new version of plugin `name` (the first version installs the
    /// plugin, disabled). With `activate` it becomes the active version at once; without, it
    /// waits as a candidate for a dry-run, shadow mode, or a later switch (`rollback` to it).
    /// `config`, when given, replaces the configuration in the same step (a new version's schema
    /// may need a new one).
    ///
    /// # Errors
    /// `Invalid` for a malformed name; `Plugin` when the runtime refuses the component; `Config`
    /// when the configuration (given, or the one kept) does not fit the component's schema;
    /// `Store(Invalid)` when `name` is a plugin of another world; the organization does not exist,
    /// or a database failure (`Store`).
    #[allow(clippy::too_many_arguments)]
    pub fn install(
        &self,
        org: &str,
        actor: &Actor,
        name: &str,
        bytes: &[u8],
        author_version: Option<&str>,
        config: Option<Value>,
        activate: bool,
    ) -> Result<PluginRow> {
        check_name(name)?;
        let store = self.org(org)?;
        let plugin = self
            .runtime()
            .load(name, bytes)
            .map_err(|e| PipelineError::Plugin(format!("plugin `{name}` was refused: the component {e}")))?;
        let info = plugin.info();
        let contract = info.version_string();
        let component = NewComponent {
            hash: &info.sha256,
            bytes,
            world: info.world.name(),
            contract: &contract,
            config_schema: info.config_schema.as_deref(),
            author_version,
        };
        let existing = store.plugin(name)?;
        let config = match config {
            Some(c) => c,
            None => existing.as_ref().map_or_else(|| Value::Object(Default::default()), |p| p.config.clone()),
        };
        validate_config(info.config_schema.as_deref(), &config)?;
        let row = store.write(|tx| {
            tx.install_version(actor, name, &component, activate)?;
            let mut row = tx.plugin(name)?.ok_or_else(|| no_plugin(name))?;
            if row.config != config {
                row.config = config.clone();
                tx.save_plugin(actor, "plugin.config", &row)?;
            }
            Ok(row)
        })?;
        self.invalidate(&store);
        Ok(row)
    }

    /// # Errors
    /// The organization does not exist, or a database failure (`Store`).
    pub fn plugins(&self, org: &str) -> Result<Vec<PluginRow>> {
        Ok(self.org(org)?.plugins()?)
    }

    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn plugin(&self, org: &str, name: &str) -> Result<PluginRow> {
        self.org(org)?.plugin(name)?.ok_or_else(|| PipelineError::NotFound(no_plugin(name).to_string()))
    }

    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn versions(&self, org: &str, name: &str) -> Result<Vec<Installed>> {
        let store = self.org(org)?;
        let row = store.plugin(name)?.ok_or_else(|| PipelineError::NotFound(no_plugin(name).to_string()))?;
        Ok(store
            .plugin_versions(name)?
            .into_iter()
            .map(|v| Installed {
                active: v.version == row.active_version,
                shadow: Some(v.version) == row.shadow_version,
                version: v,
            })
            .collect())
    }

    /// # Errors
    /// `NotFound` when the plugin (or its active version) is not installed; `Config` when its
    /// configuration does not fit the active version's schema; the organization does not exist, or
    /// a database failure (`Store`).
    pub fn enable(&self, org: &str, actor: &Actor, name: &str) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.enable", |store, row| {
            validate_config(schema_of(store, name, row.active_version)?.as_deref(), &row.config)?;
            row.enabled = true;
            row.disabled_reason = None;
            Ok(())
        })
    }

    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn disable(&self, org: &str, actor: &Actor, name: &str) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.disable", |_, row| {
            row.enabled = false;
            Ok(())
        })
    }

    /// Replace the configuration; refused, with the path of the bad field, if the active version's
    /// schema does not accept it.
    ///
    /// # Errors
    /// `NotFound` when the plugin (or its active version) is not installed; `Config` when the
    /// active version's schema refuses `config`; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn configure(&self, org: &str, actor: &Actor, name: &str, config: Value) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.config", |store, row| {
            validate_config(schema_of(store, name, row.active_version)?.as_deref(), &config)?;
            row.config = config;
            Ok(())
        })
    }

    /// Move a plugin to `position` among the organization's plugins of its world (1 is first);
    /// the others keep their relative order.
    ///
    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn reorder(&self, org: &str, actor: &Actor, name: &str, position: usize) -> Result<Vec<PluginRow>> {
        let store = self.org(org)?;
        let row = store.plugin(name)?.ok_or_else(|| PipelineError::NotFound(no_plugin(name).to_string()))?;
        let mut same: Vec<PluginRow> = store.plugins()?.into_iter().filter(|p| p.world == row.world).collect();
        let at = same.iter().position(|p| p.name == name).expect("listed");
        let moved = same.remove(at);
        same.insert(position.clamp(1, same.len() + 1) - 1, moved);
        store.write(|tx| {
            for (i, p) in same.iter_mut().enumerate() {
                if p.position != i as i64 + 1 {
                    p.position = i as i64 + 1;
                    tx.save_plugin(actor, "plugin.order", p)?;
                }
            }
            Ok(())
        })?;
        self.invalidate(&store);
        Ok(same)
    }

    /// # Errors
    /// `NotFound` when the plugin is not installed; the organization does not exist, or a database
    /// failure (`Store`).
    pub fn set_failure_mode(&self, org: &str, actor: &Actor, name: &str, mode: FailureMode) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.failure_mode", |_, row| {
            row.failure_mode = mode;
            Ok(())
        })
    }

    /// Make an earlier version active again: `version`, or the one before the active one.
    ///
    /// # Errors
    /// `NotFound` when the plugin or `version` is not installed; `Invalid` without `version` when
    /// there is no earlier version; `Config` when that version's schema refuses the configuration;
    /// the organization does not exist, or a database failure (`Store`).
    pub fn rollback(&self, org: &str, actor: &Actor, name: &str, version: Option<u32>) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.rollback", |store, row| {
            let target = match version {
                Some(v) => v,
                None => store
                    .plugin_versions(name)?
                    .into_iter()
                    .map(|v| v.version)
                    .find(|&v| v < row.active_version)
                    .ok_or_else(|| {
                    PipelineError::Invalid(format!(
                        "plugin `{name}` has no version before {} to roll back to",
                        row.active_version
                    ))
                })?,
            };
            if store.plugin_version(name, target)?.is_none() {
                return Err(PipelineError::NotFound(format!("plugin `{name}` has no version {target}")));
            }
            validate_config(schema_of(store, name, target)?.as_deref(), &row.config)?;
            row.active_version = target;
            if row.shadow_version == Some(target) {
                row.shadow_version = None;
            }
            Ok(())
        })
    }

    /// Run `version` beside the active one on live writes (its decisions are only compared and
    /// counted), or stop shadowing with `None`.
    ///
    /// # Errors
    /// `NotFound` when the plugin or `version` is not installed; `Invalid` for a plugin that is not
    /// a policy; `Config` when that version's schema refuses the configuration; the organization
    /// does not exist, or a database failure (`Store`).
    pub fn set_shadow(&self, org: &str, actor: &Actor, name: &str, version: Option<u32>) -> Result<PluginRow> {
        self.change_plugin(org, actor, name, "plugin.shadow", |store, row| {
            if let Some(v) = version {
                if row.world != "policy" {
                    return Err(PipelineError::Invalid(
                        "shadow mode compares policy decisions; try a scorer's new version with a dry-run".into(),
                    ));
                }
                if store.plugin_version(name, v)?.is_none() {
                    return Err(PipelineError::NotFound(format!("plugin `{name}` has no version {v}")));
                }
                validate_config(schema_of(store, name, v)?.as_deref(), &row.config)?;
            }
            row.shadow_version = version;
            Ok(())
        })
    }

    fn change_plugin(
        &self,
        org: &str,
        actor: &Actor,
        name: &str,
        action: &str,
        f: impl FnOnce(&OrgStore, &mut PluginRow) -> Result<()>,
    ) -> Result<PluginRow> {
        let store = self.org(org)?;
        let mut row = store.plugin(name)?.ok_or_else(|| PipelineError::NotFound(no_plugin(name).to_string()))?;
        f(&store, &mut row)?;
        store.write(|tx| tx.save_plugin(actor, action, &row))?;
        self.invalidate(&store);
        Ok(row)
    }
}

/// The config schema of one version of a plugin.
fn schema_of(store: &OrgStore, name: &str, version: u32) -> Result<Option<String>> {
    let v = store
        .plugin_version(name, version)?
        .ok_or_else(|| PipelineError::NotFound(format!("plugin `{name}` has no version {version}")))?;
    Ok(store.component_schema(&v.hash)?)
}
