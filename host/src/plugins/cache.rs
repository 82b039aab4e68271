//! Compiled components on disk, so that a restart deserializes (~0.3 ms) instead of compiling
//! (30 ms for a small Rust plugin, seconds for a Python one).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::AdmissionError;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub struct DiskCache {
    dir: Option<PathBuf>,
    /// Identifies the engine configuration and wasmtime version the artifacts were compiled for.
    engine_key: String,
}

impl DiskCache {
    pub fn new(dir: Option<PathBuf>, engine: &Engine) -> anyhow::Result<DiskCache> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create the plugin cache directory {}: {e}", dir.display()))?;
        }
        // SipHash with std's fixed keys: stable for one build of Rapport, which is all that
        // matters because the key also guards against a different wasmtime.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache { dir, engine_key: format!("{:016x}", hasher.finish()) })
    }

    /// The compiled component for these bytes (already validated), from disk when it is there.
    pub fn component(&self, engine: &Engine, hash: &[u8; 32], bytes: &[u8]) -> Result<Component, AdmissionError> {
        let compile_error = |e: wasmtime::Error| AdmissionError::Compile(format!("{e:#}"));
        let Some(dir) = &self.dir else {
            return Component::new(engine, bytes).map_err(compile_error);
        };
        let path = dir.join(format!("{}-{}.cwasm", hex::encode(hash), self.engine_key));
        if path.exists() {
            // SAFETY: `deserialize_file` runs whatever machine code the file holds. This file was
            // written below by this process's own compiler, under the cache directory Rapport
            // owns, named by the sha256 of the component it was compiled from and by the engine
            // configuration: precompiled bytes are never accepted from outside.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable cached component");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let compiled = engine.precompile_component(bytes).map_err(compile_error)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, &compiled).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a compiled component");
            let _ = std::fs::remove_file(&tmp);
        }
        // SAFETY: `compiled` was produced just above by this engine's own compiler.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(compile_error)
    }
}
