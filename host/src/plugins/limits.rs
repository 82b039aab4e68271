//! What one plugin call may use, and the limiter that enforces the memory/table/instance parts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::World;

/// Limits of one call. Defaults depend on the world: a policy runs inside a write's latency
/// budget, a scorer on a batch, a reporter over a whole organization. Organizations may be given
/// other values (the admin API stores them per organization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock CPU budget, enforced by epoch interruption (the server's meter).
    #[serde(with = "millis")]
    pub cpu_time: Duration,
    /// Instruction budget, enforced by fuel (the `plugin run` meter: deterministic counts).
    pub fuel: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest table, in elements.
    pub table_elements: usize,
    /// Core instances, memories and tables one component may create.
    pub instances: usize,
    pub tables: usize,
    pub memories: usize,
    /// Largest returned value, in bytes (strings and lists counted by their length).
    pub output_bytes: usize,
    /// Calls into the host (store queries, log lines, config reads).
    pub host_calls: u32,
    /// Log lines kept in the trace; later lines are counted, not kept.
    pub log_lines: usize,
}

impl Limits {
    /// The world's defaults with the keys of `overrides` (a JSON object, e.g. `rapport plugin run
    /// --limits`) laid over them: a key left out keeps the plugin's own world's default, not
    /// another world's. An unknown key is an error naming the keys there are.
    ///
    /// # Errors
    /// serde's message when `overrides` is not an object, names an unknown key, or gives a value of
    /// the wrong type.
    pub fn overriding(world: World, overrides: &serde_json::Value) -> Result<Limits, serde_json::Error> {
        let mut merged = serde_json::to_value(Limits::for_world(world))?;
        if let (Some(base), Some(given)) = (merged.as_object_mut(), overrides.as_object()) {
            base.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
            return serde_json::from_value(merged);
        }
        // Not an object: let serde say so in its own words.
        serde_json::from_value(overrides.clone())
    }

    pub fn for_world(world: World) -> Limits {
        let base = Limits {
            cpu_time: Duration::from_millis(100),
            fuel: 500_000_000,
            memory_bytes: 64 << 20,
            table_elements: 20_000,
            instances: 64,
            tables: 32,
            memories: 8,
            output_bytes: 1 << 20,
            host_calls: 10_000,
            log_lines: 200,
        };
        match world {
            World::Policy => base,
            World::Scorer => {
                Limits { cpu_time: Duration::from_secs(10), fuel: 20_000_000_000, output_bytes: 32 << 20, ..base }
            }
            World::Reporter => {
                Limits { cpu_time: Duration::from_secs(30), fuel: 50_000_000_000, output_bytes: 16 << 20, ..base }
            }
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::for_world(World::Policy)
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Which resource limit a call ran into, recorded when the limiter refuses a request so the call
/// error can name it (the guest usually turns a refused `memory.grow` into a trap of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Memory { requested: usize },
    Table { requested: usize },
}

/// Enforces [`Limits`] on one store's memories, tables and instances.
pub struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub(super) hit: Option<Hit>,
    pub(super) peak_memory: usize,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            tables: limits.tables,
            memories: limits.memories,
            hit: None,
            peak_memory: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit.get_or_insert(Hit::Memory { requested: desired });
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.hit.get_or_insert(Hit::Table { requested: desired });
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}
