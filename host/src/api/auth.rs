//! Who is calling: the admin token (everything) or an organization's API key with a role.
//! Tokens are compared by their sha256; the database holds only hashes.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::RngExt;
use sha2::{Digest, Sha256};

use super::{ApiError, State, blocking};
use crate::model::Actor;

/// Roles, weakest first: each can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads.
    ReadOnly,
    /// Customers and interactions.
    Agent,
    /// Data, imports, reports and jobs.
    Manager,
    /// Everything in the organization, plugins and keys included.
    Owner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "read-only" => Role::ReadOnly,
            "agent" => Role::Agent,
            "manager" => Role::Manager,
            "owner" => Role::Owner,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Agent => "agent",
            Role::Manager => "manager",
            Role::Owner => "owner",
        }
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits), with a prefix that says what it is.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    Key { org: String, name: String, role: Role },
}

impl Caller {
    /// Allow the call on `org` with at least `role`. A key of another organization gets the same
    /// 404 as an organization that does not exist: no hint that it does.
    pub fn require(&self, org: &str, role: Role) -> Result<Actor, ApiError> {
        match self {
            Caller::Admin => Ok(Actor { name: "admin".into(), role: "admin".into() }),
            Caller::Key { org: mine, .. } if mine != org => {
                Err(ApiError::not_found(format!("organization `{org}` does not exist")))
            }
            Caller::Key { name, role: have, .. } if *have >= role => {
                Ok(Actor { name: name.clone(), role: have.name().into() })
            }
            Caller::Key { role: have, .. } => Err(ApiError::forbidden(format!(
                "this key's role `{}` may not do this; it needs `{}` or above",
                have.name(),
                role.name()
            ))),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Key { .. } => Err(ApiError::forbidden("only the admin token manages organizations")),
        }
    }
}

impl FromRequestParts<State> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Caller, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("send `Authorization: Bearer <token>` (the admin token or an API key)")
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let hash = hash_token(token);
        if hash == state.admin_hash {
            return Ok(Caller::Admin);
        }
        let owner = blocking(state, move |p| Ok(p.store().key_by_hash(&hash)?)).await?;
        match owner {
            Some(o) => Ok(Caller::Key {
                org: o.org_slug,
                name: o.key.name,
                role: Role::parse(&o.key.role).unwrap_or(Role::ReadOnly),
            }),
            None => Err(ApiError::unauthorized("this token is not valid (revoked, or never issued)")),
        }
    }
}
