//! Who is calling: the admin token (everything) or an organization's API key with a role.
//! Tokens are compared by their sha256 (the admin token's in constant time); the database holds
//! only hashes, and no token is ever logged.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, State, blocking};
pub use crate::model::Role;
use crate::model::{Actor, Customer};
pub use crate::store::Scope;

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits), with a prefix that says what it is.
pub fn new_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// A new customer of a scoped agent lands in the scope: missing fields are filled in, other
/// values refused.
pub fn place(scope: &Scope, c: &mut Customer) -> Result<(), ApiError> {
    if let Some(b) = &scope.branch {
        match &c.branch {
            None => c.branch = Some(b.clone()),
            Some(theirs) if theirs == b => {}
            Some(theirs) => {
                return Err(ApiError::forbidden(format!(
                    "this key works in branch `{b}` only; it cannot place a customer in `{theirs}`"
                ))
                .with_field(Some("branch".into())));
            }
        }
    }
    if let Some(d) = scope.distributor {
        match c.distributor {
            None => c.distributor = Some(d),
            Some(theirs) if theirs == d => {}
            Some(theirs) => {
                return Err(ApiError::forbidden(format!(
                    "this key works for distributor {d} only; it cannot assign a customer to {theirs}"
                ))
                .with_field(Some("distributor".into())));
            }
        }
    }
    Ok(())
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    Key { org: String, name: String, role: Role, scope: Scope },
}

impl Caller {
    /// Allow the call on `org` with at least `role`. A key of another organization gets the same
    /// 404 as an organization that does not exist: no hint that it does.
    pub fn require(&self, org: &str, role: Role) -> Result<Actor, ApiError> {
        match self {
            Caller::Admin => Ok(Actor { name: "admin".into(), role: Role::Admin }),
            Caller::Key { org: mine, .. } if mine != org => {
                Err(ApiError::not_found(format!("organization `{org}` does not exist")))
            }
            Caller::Key { name, role: have, .. } if *have >= role => Ok(Actor { name: name.clone(), role: *have }),
            Caller::Key { role: have, .. } => Err(ApiError::forbidden(format!(
                "this key's role `{}` may not do this; it needs `{}` or above",
                have.name(),
                role.name()
            ))),
        }
    }

    /// The scope this caller works in (the whole organization unless a scoped key).
    pub fn scope(&self) -> Scope {
        match self {
            Caller::Admin => Scope::default(),
            Caller::Key { scope, .. } => scope.clone(),
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
        // Constant time: `==` stops at the first differing byte, and how long that took would
        // tell an attacker how much of the admin token's hash they have right. (API keys are
        // found by their hash through an index instead: a timing difference there is about the
        // sha256 of a random 256-bit token, which gives no way back to a token.)
        if bool::from(hash.as_bytes().ct_eq(state.admin_hash.as_bytes())) {
            return Ok(Caller::Admin);
        }
        let owner = blocking(state, move |p| Ok(p.store().key_by_hash(&hash)?)).await?;
        match owner {
            Some(o) => Ok(Caller::Key {
                org: o.org_slug,
                name: o.key.name,
                role: Role::parse(&o.key.role).unwrap_or(Role::ReadOnly),
                scope: Scope { branch: o.key.branch, distributor: o.key.distributor },
            }),
            None => Err(ApiError::unauthorized("this token is not valid (revoked, or never issued)")),
        }
    }
}
