//! Branches, distributors and their sponsor tree, segments. Branch and distributor writes go
//! through the policy pipeline like customer writes: a dealer's standard for branches, or a
//! network's rules for who may sponsor whom, are policies.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Role};
use super::customers::written;
use super::{ApiError, OrgPath, State, blocking, created, id, json_body, ok, page, query_number, to_json};
use crate::model::{Branch, Distributor, Id, Origin};
use crate::pipeline::Write;

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(list_branches))
        .routes(routes!(get_branch, save_branch))
        .routes(routes!(list_distributors, create_distributor))
        .routes(routes!(get_distributor, update_distributor))
        .routes(routes!(downline))
        .routes(routes!(move_distributor))
        .routes(routes!(list_segments))
        .routes(routes!(get_segment, save_segment, delete_segment))
        .routes(routes!(segment_customers))
}

/// The organization's branches.
#[utoipa::path(get, path = "/v1/orgs/{org}/branches", tag = "directory",
    params(OrgPath),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_branches(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let items = blocking(&state, move |p| Ok(p.org(&org)?.branches()?)).await?;
    Ok(page(&items, None))
}

/// One branch.
#[utoipa::path(get, path = "/v1/orgs/{org}/branches/{code}", tag = "directory",
    params(OrgPath, ("code" = String, Path, description = "The branch code")),
    responses((status = 200, body = Branch, description = "The branch"), (status = 404, description = "No such branch")))]
async fn get_branch(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, code)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let found = blocking(&state, move |p| {
        p.org(&org)?.branch(&code)?.ok_or_else(|| ApiError::not_found(format!("branch `{code}` does not exist")))
    })
    .await?;
    Ok(ok(to_json(&found)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BranchBody {
    name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: crate::model::Attributes,
}

/// Create or update a branch; policies judge it.
#[utoipa::path(put, path = "/v1/orgs/{org}/branches/{code}", tag = "directory", request_body = BranchBody,
    params(OrgPath, ("code" = String, Path, description = "The branch code")),
    responses((status = 200, description = "The branch as stored"), (status = 422, description = "Denied by a policy")))]
async fn save_branch(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, code)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let BranchBody { name, attributes } = json_body(&body)?;
    let branch = Branch { code, name, attributes };
    let out = blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::SaveBranch(branch))?)).await?;
    Ok(ok(written(out)))
}

/// Distributors by id: `?cursor=`, `?limit=`, `?sponsor=` (only that distributor's recruits).
#[utoipa::path(get, path = "/v1/orgs/{org}/distributors", tag = "directory",
    params(OrgPath,
        ("sponsor" = Option<u64>, Query, description = "Only this distributor's direct recruits"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 100)")),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_distributors(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let after: Id = query_number(&q, "cursor")?.unwrap_or(0);
    let limit: u32 = query_number(&q, "limit")?.unwrap_or(100);
    let sponsor = q.get("sponsor").map(|s| id(s)).transpose()?;
    let scope = caller.scope();
    let items = blocking(&state, move |p| Ok(p.view(&org, scope)?.distributors(after, limit, sponsor)?)).await?;
    let next = (items.len() as u32 == limit.clamp(1, 1000)).then(|| items.last().map(|d| d.id.to_string())).flatten();
    Ok(page(&items, next))
}

/// Add a distributor (with `sponsor`, under that distributor); policies judge it.
#[utoipa::path(post, path = "/v1/orgs/{org}/distributors", tag = "directory", request_body = Distributor,
    params(OrgPath),
    responses((status = 201, description = "The distributor as stored"), (status = 422, description = "Denied by a policy")))]
async fn create_distributor(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let mut d: Distributor = json_body(&body)?;
    d.id = 0;
    let out = blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::SaveDistributor(d))?)).await?;
    Ok(created(written(out)))
}

/// One distributor with its upline (sponsors, nearest first).
#[utoipa::path(get, path = "/v1/orgs/{org}/distributors/{id}", tag = "directory",
    params(OrgPath, ("id" = u64, Path, description = "The distributor's id")),
    responses((status = 200, description = "The distributor and `upline`"), (status = 404, description = "No such distributor")))]
async fn get_distributor(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, d)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let d = id(&d)?;
    let scope = caller.scope();
    let body = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        let found = view.distributor(d)?.ok_or_else(|| no_distributor(d))?;
        let mut body = to_json(&found);
        // Only the sponsors the caller's scope reaches (a distributor's key sees none above it).
        let mut upline = Vec::new();
        for u in view.org().upline(d)? {
            if view.scope().is_whole_org() || view.distributor(u.id)?.is_some() {
                upline.push(u);
            }
        }
        body["upline"] = to_json(&upline);
        Ok(body)
    })
    .await?;
    Ok(ok(body))
}

/// Replace a distributor's record; policies judge it.
#[utoipa::path(put, path = "/v1/orgs/{org}/distributors/{id}", tag = "directory", request_body = Distributor,
    params(OrgPath, ("id" = u64, Path, description = "The distributor's id")),
    responses((status = 200, description = "The distributor as stored"), (status = 422, description = "Denied by a policy")))]
async fn update_distributor(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, d)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let id = id(&d)?;
    let mut d: Distributor = json_body(&body)?;
    d.id = id;
    let out = blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::SaveDistributor(d))?)).await?;
    Ok(ok(written(out)))
}

/// Everyone below a distributor, breadth first, with their depth.
#[utoipa::path(get, path = "/v1/orgs/{org}/distributors/{id}/downline", tag = "directory",
    params(OrgPath, ("id" = u64, Path, description = "The distributor's id"),
        ("depth" = Option<u32>, Query, description = "Levels down (default 10)")),
    responses((status = 200, description = "`{items: [{distributor, depth}], next_cursor}`"), (status = 404, description = "No such distributor")))]
async fn downline(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, d)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let d = id(&d)?;
    let depth: u32 = query_number(&q, "depth")?.unwrap_or(10);
    let scope = caller.scope();
    let items = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        view.distributor(d)?.ok_or_else(|| no_distributor(d))?;
        Ok(view.org().downline(d, depth.clamp(1, 100))?)
    })
    .await?;
    Ok(page(&items, None))
}

fn no_distributor(d: Id) -> ApiError {
    ApiError::not_found(format!("distributor {d} does not exist"))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Move {
    /// The new sponsor; null makes the distributor a root.
    sponsor: Option<Id>,
}

/// Move a distributor (and its downline) under another sponsor. Policies judge the move; a move
/// under its own downline is refused.
#[utoipa::path(post, path = "/v1/orgs/{org}/distributors/{id}/move", tag = "directory", request_body = Move,
    params(OrgPath, ("id" = u64, Path, description = "The distributor's id")),
    responses((status = 200, description = "The distributor as stored"), (status = 400, description = "The move would make a cycle"),
        (status = 422, description = "Denied by a policy")))]
async fn move_distributor(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, d)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let d = id(&d)?;
    let Move { sponsor } = json_body(&body)?;
    let out = blocking(&state, move |p| {
        let mut found = p
            .org(&org)?
            .distributor(d)?
            .ok_or_else(|| ApiError::not_found(format!("distributor {d} does not exist")))?;
        found.sponsor = sponsor;
        p.write(&org, &actor, Origin::Api, Write::SaveDistributor(found))
            .map_err(|e| ApiError::from(e).with_field(Some("sponsor".into())))
    })
    .await?;
    Ok(ok(written(out)))
}

/// Saved segments (named customer filters).
#[utoipa::path(get, path = "/v1/orgs/{org}/segments", tag = "directory",
    params(OrgPath),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_segments(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let items = blocking(&state, move |p| Ok(p.org(&org)?.segments()?)).await?;
    Ok(page(&items, None))
}

/// One segment, with how many customers are in it now.
#[utoipa::path(get, path = "/v1/orgs/{org}/segments/{name}", tag = "directory",
    params(OrgPath, ("name" = String, Path, description = "The segment's name")),
    responses((status = 200, description = "The segment and its `count`"), (status = 404, description = "No such segment")))]
async fn get_segment(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let scope = caller.scope();
    let body = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        let s = view
            .org()
            .segment(&name)?
            .ok_or_else(|| ApiError::not_found(format!("segment `{name}` does not exist")))?;
        let mut body = to_json(&s);
        // Counted within the caller's scope: an agent sees how many of theirs are in it.
        body["count"] = json!(view.count_customers(&s.filter)?);
        Ok(body)
    })
    .await?;
    Ok(ok(body))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SegmentBody {
    /// The filter language of the customer list.
    filter: String,
    #[serde(default)]
    description: String,
}

/// Create or replace a segment.
#[utoipa::path(put, path = "/v1/orgs/{org}/segments/{name}", tag = "directory", request_body = SegmentBody,
    params(OrgPath, ("name" = String, Path, description = "The segment's name")),
    responses((status = 200, description = "The segment"), (status = 400, description = "A bad filter")))]
async fn save_segment(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let SegmentBody { filter, description } = json_body(&body)?;
    let saved = blocking(&state, move |p| {
        let store = p.org(&org)?;
        store
            .save_segment(&actor, &name, &filter, &description)
            .map_err(|e| ApiError::from(e).with_field(Some("filter".into())))?;
        Ok(store.segment(&name)?)
    })
    .await?;
    Ok(ok(to_json(&saved)))
}

/// Remove a segment.
#[utoipa::path(delete, path = "/v1/orgs/{org}/segments/{name}", tag = "directory",
    params(OrgPath, ("name" = String, Path, description = "The segment's name")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such segment")))]
async fn delete_segment(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let gone = blocking(&state, move |p| Ok(p.org(&org)?.delete_segment(&actor, &name)?)).await?;
    if gone { Ok(StatusCode::NO_CONTENT.into_response()) } else { Err(ApiError::not_found("no such segment")) }
}

/// The customers in a segment now, a page at a time.
#[utoipa::path(get, path = "/v1/orgs/{org}/segments/{name}/customers", tag = "directory",
    params(OrgPath, ("name" = String, Path, description = "The segment's name"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 50)")),
    responses((status = 200, description = "`{items, next_cursor}`"), (status = 404, description = "No such segment")))]
async fn segment_customers(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let limit: u32 = query_number(&q, "limit")?.unwrap_or(50);
    let scope = caller.scope();
    let body = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        let s = view
            .org()
            .segment(&name)?
            .ok_or_else(|| ApiError::not_found(format!("segment `{name}` does not exist")))?;
        Ok(to_json(&view.list_customers(&s.filter, q.get("cursor").map(String::as_str), limit)?))
    })
    .await?;
    Ok(ok(body))
}
