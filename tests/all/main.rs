//! Rapport's integration tests: one binary (each links wasmtime), a module per area. Plugins are
//! real components built from source by `rapport-test-plugins`.

mod api;
mod author_errors;
mod cli;
mod client;
mod console;
mod contract;
mod crash;
mod examples;
mod fuzz;
mod languages;
mod people;
mod pipeline;
mod policies;
mod reliability;
mod reports;
mod runtime;
mod server;
mod serving;
mod standard;
mod store;
mod tenancy;
mod webhooks;

use std::sync::Arc;

use rapport::fixture::Fixture;
use rapport::model::{Change, Customer, Entity, Operation};
use rapport::plugins::{CallContext, Empty, Limits, Meter, Plugin, Runtime, RuntimeConfig, World};
use serde_json::{Value, json};

/// Import into an organization through the write pipeline, the one way records come in, for
/// tests that otherwise need only the store.
pub fn import(
    org: &rapport::store::OrgStore,
    actor: &rapport::model::Actor,
    kind: rapport::pipeline::ImportKind,
    format: rapport::pipeline::ImportFormat,
    reader: impl std::io::BufRead,
) -> Result<rapport::pipeline::ImportReport, rapport::pipeline::PipelineError> {
    let pipeline = rapport::pipeline::Pipeline::new(org.store().clone(), runtime(Meter::Epoch), Default::default());
    pipeline.import(&org.org().slug, actor, kind, format, reader, |_| {}, false)
}

pub fn runtime(meter: Meter) -> Runtime {
    Runtime::new(RuntimeConfig { meter, max_instances: 8, ..RuntimeConfig::default() }).expect("runtime starts")
}

pub fn load(rt: &Runtime, path: &str) -> Plugin {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = std::path::Path::new(path).file_stem().unwrap().to_string_lossy().into_owned();
    rt.load(&name, &bytes).unwrap_or_else(|e| panic!("{path} is refused: {e}"))
}

pub fn ctx(world: World, config: Value) -> CallContext {
    CallContext::new(Arc::new(Empty), &config, Limits::for_world(world))
}

/// A call reading `fixture` as `rapport plugin run` does: loaded into an in-memory store.
pub fn ctx_with(fixture: Fixture, world: World, config: Value) -> CallContext {
    CallContext::new(Arc::new(fixture.store().expect("the fixture loads")), &config, Limits::for_world(world))
}

pub fn create_customer(customer: Value) -> Change {
    let customer: Customer = serde_json::from_value(customer).expect("a valid customer");
    Change {
        operation: Operation::Create,
        before: None,
        after: Some(Entity::Customer(customer)),
        changed_fields: Vec::new(),
        actor: Default::default(),
        origin: Default::default(),
        depth: 0,
        at: 1_700_000_000_000,
    }
}

pub fn attack(name: &str) -> Value {
    json!({ "attack": name })
}
