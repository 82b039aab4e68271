//! Rapport: a self-hosted CRM whose business rules are WebAssembly plugins.
//!
//! Start with `ARCHITECTURE.md` at the repository root for the map of the code.

pub mod aggregate;
pub mod api;
pub mod client;
pub mod console;
pub mod demo;
pub mod fixture;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plugins;
pub mod runner;
pub mod server;
pub mod store;
pub mod webhooks;
