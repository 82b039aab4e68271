use crate::{PluginError, Report};

/// A reporter plugin: turns the organization's data into a table and an optional chart.
pub trait Reporter {
    /// Run with the caller's parameters, a JSON object (parse it with `serde_json::from_str`).
    fn run(params: String) -> Result<Report, PluginError>;
}

/// Export a [`Reporter`] as this component's implementation of the `reporter` world.
#[macro_export]
macro_rules! export_reporter {
    ($ty:ty) => {
        const _: () = {
            struct RapportReporter;
            impl $crate::bindings::Guest for RapportReporter {
                fn run(params: String) -> Result<$crate::Report, $crate::PluginError> {
                    $crate::__init();
                    <$ty as $crate::Reporter>::run(params)
                }
            }
    $crate::bindings::__export_world!(RapportReporter with_types_in $crate::bindings);
        };
    };
}
