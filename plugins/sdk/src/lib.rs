//! Write Rapport plugins in Rust.
//!
//! A plugin is one WebAssembly component implementing one world of the `rapport:plugin` contract
//! (`wit/`). Enable the SDK feature of your world (`policy`, `scorer` or `reporter`), implement
//! the trait of the same name on a type, and export it with the world's macro:
//!
//! ```ignore
//! use rapport_plugin::{Change, Decision, Policy, PluginError};
//!
//! struct RequireEmail;
//!
//! impl Policy for RequireEmail {
//!     fn before(change: Change) -> Result<Decision, PluginError> {
//!         Ok(match change.after_customer() {
//!             Some(c) if c.email.is_none() => Decision::deny("every customer needs an email", "email"),
//!             _ => Decision::Allow,
//!         })
//!     }
//! }
//!
//! rapport_plugin::export_policy!(RequireEmail);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; try it with `rapport plugin run`.

#[cfg(any(
    all(feature = "policy", feature = "scorer"),
    all(feature = "policy", feature = "reporter"),
    all(feature = "scorer", feature = "reporter"),
))]
compile_error!(
    "rapport-plugin: enable exactly one of the features `policy`, `scorer`, `reporter` \
     (a plugin implements one world; build each plugin with its own `cargo build -p`)"
);

#[cfg(not(any(feature = "policy", feature = "scorer", feature = "reporter")))]
compile_error!("rapport-plugin: enable the feature of your plugin's world: `policy`, `scorer` or `reporter`");

// The generated code names the runtime through this crate's own name, as authors' crates do.
extern crate self as rapport_plugin;

#[doc(hidden)]
pub mod bindings {
    #[cfg(feature = "policy")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "rapport_plugin::bindings",
        runtime_path: "rapport_plugin::__wit_bindgen_rt",
    });
    #[cfg(feature = "scorer")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "scorer",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "rapport_plugin::bindings",
        runtime_path: "rapport_plugin::__wit_bindgen_rt",
    });
    #[cfg(feature = "reporter")]
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "reporter",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "rapport_plugin::bindings",
        runtime_path: "rapport_plugin::__wit_bindgen_rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen::rt as __wit_bindgen_rt;

pub use bindings::rapport::plugin::types::*;

/// Read-only queries on the calling organization's data.
pub mod store {
    pub use crate::bindings::rapport::plugin::store::*;
}

/// The contract version this SDK builds against.
pub const CONTRACT_VERSION: &str = "0.1.0";

mod helpers;
pub use helpers::*;

#[cfg(feature = "policy")]
mod policy;
#[cfg(feature = "policy")]
pub use policy::Policy;

#[cfg(feature = "scorer")]
mod scorer;
#[cfg(feature = "scorer")]
pub use scorer::Scorer;

#[cfg(feature = "reporter")]
mod reporter;
#[cfg(feature = "reporter")]
pub use reporter::Reporter;
