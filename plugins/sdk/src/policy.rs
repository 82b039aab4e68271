use crate::{Action, Change, Decision, PluginError};

/// A policy plugin: judges every write before it lands, and may ask for follow-up actions after.
pub trait Policy {
    /// Allow, warn, deny or patch the change. Called before the write's transaction commits.
    fn before(change: Change) -> Result<Decision, PluginError>;

    /// Follow-up actions once the change has landed. Most policies need none.
    fn after(change: Change) -> Result<Vec<Action>, PluginError> {
        let _ = change;
        Ok(Vec::new())
    }
}

/// Export a [`Policy`] as this component's implementation of the `policy` world.
#[macro_export]
macro_rules! export_policy {
    ($ty:ty) => {
        const _: () = {
            struct RapportPolicy;
            impl $crate::bindings::Guest for RapportPolicy {
                fn before(change: $crate::Change) -> Result<$crate::Decision, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Policy>::before(change)
                }
                fn after(change: $crate::Change) -> Result<Vec<$crate::Action>, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Policy>::after(change)
                }
            }
    $crate::bindings::__export_world!(RapportPolicy with_types_in $crate::bindings);
        };
    };
}
