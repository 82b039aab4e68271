//! Organizations (the admin token's) and their API keys (an owner's).

use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Role, hash_token, new_token};
use super::{ApiError, OrgPath, State, blocking, created, id, json_body, ok, page, to_json};
use crate::model::Id;
use crate::store::NewKey as StoredKey;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(me))
}

/// Who the token is: the admin, or a key with its organization, role and scope. A client (the
/// CLI, the console) learns its organization from its key.
#[utoipa::path(get, path = "/v1/me", tag = "orgs",
    responses((status = 200, description = "`{admin: true}` or `{org, name, role, branch?, distributor?}`"),
        (status = 401, description = "No token, or one that is not valid")))]
async fn me(caller: Caller) -> Response {
    ok(match caller {
        Caller::Admin => json!({ "admin": true }),
        Caller::Key { org, name, role, scope } => json!({
            "admin": false, "org": org, "name": name, "role": role.name(),
            "branch": scope.branch, "distributor": scope.distributor,
        }),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    /// 1 to 64 lower-case letters, digits and `-`; the org's path is `/v1/orgs/{slug}`.
    slug: String,
    name: String,
}

/// Create an organization (admin token).
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = NewOrg,
    responses((status = 201, description = "The organization"), (status = 409, description = "The slug is taken")))]
async fn create_org(caller: Caller, Extract(state): Extract<State>, body: Bytes) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let new: NewOrg = json_body(&body)?;
    let valid = !new.slug.is_empty()
        && new.slug.len() <= 64
        && new.slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(ApiError::bad_request(format!(
            "`{}` is not a valid slug: use 1 to 64 lower-case letters, digits and `-`",
            new.slug
        ))
        .with_field(Some("slug".into())));
    }
    let org = blocking(&state, move |p| Ok(p.store().create_org(&new.slug, &new.name)?)).await?;
    Ok(created(to_json(&org)))
}

/// Every organization (admin token).
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_orgs(caller: Caller, Extract(state): Extract<State>) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let orgs = blocking(&state, |p| Ok(p.store().orgs()?)).await?;
    Ok(page(&orgs, None))
}

/// One organization.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "orgs", params(OrgPath),
    responses((status = 200, description = "The organization"), (status = 404, description = "No such organization")))]
async fn get_org(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let found = blocking(&state, move |p| Ok(p.org(&org)?.org().clone())).await?;
    Ok(ok(to_json(&found)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    /// `owner`, `manager`, `agent` or `read-only`.
    role: String,
    /// For an agent key: only this branch's customers.
    #[serde(default)]
    branch: Option<String>,
    /// For an agent key: only this distributor's customers.
    #[serde(default)]
    distributor: Option<Id>,
}

/// Create an API key; its token is in the answer, and only there.
#[utoipa::path(post, path = "/v1/orgs/{org}/keys", tag = "orgs", request_body = NewKey,
    params(OrgPath),
    responses((status = 201, description = "The key with its `token`, shown once")))]
async fn create_key(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let new: NewKey = json_body(&body)?;
    let Some(role) = Role::parse(&new.role) else {
        return Err(ApiError::bad_request(format!(
            "unknown role `{}`: use owner, manager, agent or read-only",
            new.role
        ))
        .with_field(Some("role".into())));
    };
    if (new.branch.is_some() || new.distributor.is_some()) && role != Role::Agent {
        return Err(ApiError::bad_request(
            "only an agent key can be scoped to a branch or a distributor; the other roles work in the whole \
             organization",
        )
        .with_field(Some(if new.branch.is_some() { "branch" } else { "distributor" }.into())));
    }
    let token = new_token("rk");
    let hash = hash_token(&token);
    let key = blocking(&state, move |p| {
        let store = p.org(&org)?;
        if let Some(d) = new.distributor
            && store.distributor(d)?.is_none()
        {
            return Err(
                ApiError::bad_request(format!("distributor {d} does not exist")).with_field(Some("distributor".into()))
            );
        }
        Ok(store.create_key(&StoredKey {
            name: &new.name,
            role: &new.role,
            hash: &hash,
            branch: new.branch.as_deref(),
            distributor: new.distributor,
        })?)
    })
    .await?;
    let mut out = to_json(&key);
    out["token"] = json!(token);
    Ok(created(out))
}

/// The organization's keys (never their tokens).
#[utoipa::path(get, path = "/v1/orgs/{org}/keys", tag = "orgs",
    params(OrgPath),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_keys(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let keys = blocking(&state, move |p| Ok(p.org(&org)?.keys()?)).await?;
    Ok(page(&keys, None))
}

/// Revoke a key: it stops working at once.
#[utoipa::path(delete, path = "/v1/orgs/{org}/keys/{id}", tag = "orgs",
    params(OrgPath, ("id" = u64, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), (status = 404, description = "No such live key")))]
async fn revoke_key(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let key = id(&key)? as i64;
    let revoked = blocking(&state, move |p| Ok(p.org(&org)?.revoke_key(key)?)).await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("key {key} does not exist or is already revoked")))
    }
}
