//! Customers and their interactions: lists with the filter language, profiles with ETags,
//! writes through the policy pipeline, imports, merges and privacy requests.
//!
//! An agent key scoped to a branch or a distributor sees only those customers; any other
//! customer answers 404, exactly as one that does not exist.

use std::collections::HashMap;
use std::io::BufReader;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Role, place};
use super::{ApiError, OrgPath, State, blocking, created, id, json_body, ok, query_number, to_json};
use crate::model::{Customer, Entity, Id, Interaction, Origin};
use crate::pipeline::{ImportFormat, ImportKind, Outcome, Pipeline, Write};

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer, erase_customer))
        .routes(routes!(export_customer))
        .routes(routes!(merge_customer))
        .routes(routes!(customer_scores))
        .routes(routes!(timeline))
        .routes(routes!(add_interaction))
        .routes(routes!(update_ticket))
}

/// Routes that take large bodies.
pub(super) fn bulk_routes() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(import))
}

/// The answer for a customer that does not exist or is outside the caller's scope: the same.
fn no_customer(id: Id) -> ApiError {
    ApiError::not_found(format!("customer {id} does not exist"))
}

/// List customers: `?filter=` (the filter language), `?cursor=`, `?limit=`; or find one by
/// `?source=&external_id=`.
#[utoipa::path(get, path = "/v1/orgs/{org}/customers", tag = "customers",
    params(OrgPath,
        ("filter" = Option<String>, Query, description = "e.g. `branch = \"bkk-01\" and tag = \"vip\"`"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 50, at most 1000)"),
        ("source" = Option<String>, Query, description = "With `external_id`: the customer known by this key"),
        ("external_id" = Option<String>, Query, description = "With `source`")),
    responses((status = 200, description = "`{items, next_cursor}`"), (status = 400, description = "A bad filter")))]
async fn list_customers(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let scope = caller.scope();
    let page = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        if let (Some(source), Some(ext)) = (q.get("source"), q.get("external_id")) {
            let items: Vec<Customer> = view.find_customer(source, ext)?.into_iter().collect();
            return Ok(json!({ "items": items, "next_cursor": null }));
        }
        let limit = query_number(&q, "limit")?.unwrap_or(50);
        let asked = q.get("filter").map_or("", String::as_str);
        let page = view.list_customers(asked, q.get("cursor").map(String::as_str), limit).map_err(|e| {
            let field = if matches!(e, crate::store::StoreError::Filter(_)) { "filter" } else { "cursor" };
            ApiError::from(e).with_field(Some(field.into()))
        })?;
        Ok(to_json(&page))
    })
    .await?;
    Ok(ok(page))
}

/// Create a customer; policies judge it first.
#[utoipa::path(post, path = "/v1/orgs/{org}/customers", tag = "customers", request_body = Customer,
    params(OrgPath),
    responses((status = 201, description = "The customer as stored, with `warnings` and `actions`"),
        (status = 422, description = "Denied by a policy; `detail` has its reason, `field` the field")))]
async fn create_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let mut customer: Customer = json_body(&body)?;
    let scope = caller.scope();
    place(&scope, &mut customer)?;
    let out = blocking(&state, move |p| {
        Ok(p.write_in(&org, &actor, &scope, Origin::Api, Write::CreateCustomer(customer))?)
    })
    .await?;
    let etag = etag_of(&out);
    let mut response = created(written(out));
    set_etag(&mut response, etag);
    Ok(response)
}

/// A write's answer: the record as stored, with the policies' warnings and the follow-up actions.
pub(super) fn written(out: Outcome) -> Value {
    let mut record = match out.record {
        Some(Entity::Customer(c)) => to_json(&c),
        Some(Entity::Interaction(i)) => to_json(&i),
        Some(Entity::Distributor(d)) => to_json(&d),
        Some(Entity::Branch(b)) => to_json(&b),
        None => json!({}),
    };
    record["warnings"] = to_json(&out.warnings);
    record["actions"] = to_json(&out.actions);
    record["changed"] = json!(out.changed);
    record
}

fn etag_of(out: &Outcome) -> Option<String> {
    match &out.record {
        Some(Entity::Customer(c)) => Some(c.etag()),
        _ => None,
    }
}

fn set_etag(response: &mut Response, etag: Option<String>) {
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
}

/// A customer's profile: the record, its scores, segments and the latest of its timeline. The
/// `ETag` header is what `If-Match` takes on an update.
#[utoipa::path(get, path = "/v1/orgs/{org}/customers/{id}", tag = "customers",
    params(OrgPath, ("id" = u64, Path, description = "The customer's id")),
    responses((status = 200, description = "The profile, with `scores: {\"plugin.score\": value}`"),
        (status = 404, description = "No such customer (or outside this key's scope)")))]
async fn get_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let scope = caller.scope();
    let customer = id(&customer)?;
    let profile =
        blocking(&state, move |p| p.view(&org, scope)?.profile(customer, 50)?.ok_or_else(|| no_customer(customer)))
            .await?;
    let etag = profile.customer.etag();
    let mut response = ok(to_json(&profile));
    set_etag(&mut response, Some(etag));
    Ok(response)
}

/// Replace a customer's record (read, change, write back). With `If-Match: <ETag>` the update
/// lands only if nobody changed the customer since it was read (412 otherwise).
#[utoipa::path(put, path = "/v1/orgs/{org}/customers/{id}", tag = "customers", request_body = Customer,
    params(OrgPath, ("id" = u64, Path, description = "The customer's id"),
        ("If-Match" = Option<String>, Header, description = "The ETag the record had when read")),
    responses((status = 200, description = "The customer as stored, with `changed`, `warnings`, `actions`"),
        (status = 412, description = "The customer changed since it was read"),
        (status = 422, description = "Denied by a policy")))]
async fn update_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let scope = caller.scope();
    let id = id(&customer)?;
    let mut customer: Customer = json_body(&body)?;
    customer.id = id;
    place(&scope, &mut customer)?;
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request("`If-Match` must be an ETag from GET").with_field(Some("If-Match".into()))
                })?
                .trim()
                .to_owned(),
        ),
    };
    let out = blocking(&state, move |p| {
        let write = match if_match {
            Some(etag) if etag != "*" => Write::UpdateCustomerIfMatch { customer, etag },
            _ => Write::UpdateCustomer(customer),
        };
        Ok(p.write_in(&org, &actor, &scope, Origin::Api, write)?)
    })
    .await?;
    let etag = etag_of(&out);
    let mut response = ok(written(out));
    set_etag(&mut response, etag);
    Ok(response)
}

/// Erase a person (right to be forgotten): the record, its interactions and scores, and every
/// trace of them in logs and the audit log's details.
#[utoipa::path(delete, path = "/v1/orgs/{org}/customers/{id}", tag = "customers",
    params(OrgPath, ("id" = u64, Path, description = "The customer's id")),
    responses((status = 204, description = "Erased"), (status = 404, description = "No such customer")))]
async fn erase_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let scope = caller.scope();
    let id = id(&customer)?;
    blocking(&state, move |p| Ok(p.write_in(&org, &actor, &scope, Origin::Erase, Write::EraseCustomer(id))?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Everything held on one person (a data-subject access request), as one JSON document.
#[utoipa::path(get, path = "/v1/orgs/{org}/customers/{id}/export", tag = "customers",
    params(OrgPath, ("id" = u64, Path, description = "The customer's id")),
    responses((status = 200, description = "The export document"), (status = 404, description = "No such customer")))]
async fn export_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let scope = caller.scope();
    let id = id(&customer)?;
    let doc = blocking(&state, move |p| p.view(&org, scope)?.export(id)?.ok_or_else(|| no_customer(id))).await?;
    Ok(ok(doc))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Merge {
    /// The duplicate merged into the customer of the path, which stays.
    remove: u64,
}

/// Merge a duplicate into this customer; policies judge the merged profile.
#[utoipa::path(post, path = "/v1/orgs/{org}/customers/{id}/merge", tag = "customers", request_body = Merge,
    params(OrgPath, ("id" = u64, Path, description = "The customer who stays")),
    responses((status = 200, description = "The merged customer")))]
async fn merge_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let keep = id(&customer)?;
    let Merge { remove } = json_body(&body)?;
    let scope = caller.scope();
    let out = blocking(&state, move |p| {
        // Both must be the caller's to see; the one kept is checked again by the write itself.
        p.view(&org, scope.clone())?.customer(remove)?.ok_or_else(|| no_customer(remove))?;
        Ok(p.write_in(&org, &actor, &scope, Origin::Merge, Write::MergeCustomers { keep, remove })?)
    })
    .await?;
    Ok(ok(written(out)))
}

/// A customer's current scores and their history, newest first.
#[utoipa::path(get, path = "/v1/orgs/{org}/customers/{id}/scores", tag = "scores",
    params(OrgPath, ("id" = u64, Path, description = "The customer's id"),
        ("limit" = Option<u32>, Query, description = "History entries (default 100)")),
    responses((status = 200, description = "`{scores, labels, explanations, history}`"), (status = 404, description = "No such customer")))]
async fn customer_scores(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let scope = caller.scope();
    let customer = id(&customer)?;
    let limit = query_number(&q, "limit")?.unwrap_or(100);
    let body = blocking(&state, move |p| {
        let view = p.view(&org, scope)?;
        let profile = view.profile(customer, 1)?.ok_or_else(|| no_customer(customer))?;
        let history = view.org().score_history(customer, limit)?;
        Ok(json!({
            "scores": profile.scores, "labels": profile.labels, "explanations": profile.explanations,
            "history": history,
        }))
    })
    .await?;
    Ok(ok(body))
}

/// A customer's timeline, newest first, a page at a time (the profile carries the first page and
/// its `timeline_next`).
#[utoipa::path(get, path = "/v1/orgs/{org}/customers/{id}/timeline", tag = "customers",
    params(OrgPath, ("id" = u64, Path, description = "The customer's id"),
        ("before" = Option<String>, Query, description = "`next_cursor` (or the profile's `timeline_next`)"),
        ("limit" = Option<u32>, Query, description = "At most this many (default 50, at most 1000)")),
    responses((status = 200, description = "`{items, next_cursor}`"), (status = 404, description = "No such customer")))]
async fn timeline(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let scope = caller.scope();
    let customer = id(&customer)?;
    let limit: u32 = query_number(&q, "limit")?.unwrap_or(50);
    let (items, next) = blocking(&state, move |p| {
        p.view(&org, scope)?
            .timeline(customer, q.get("before").map(String::as_str), limit.clamp(1, 1000))
            .map_err(|e| ApiError::from(e).with_field(Some("before".into())))?
            .ok_or_else(|| no_customer(customer))
    })
    .await?;
    Ok(super::page(&items, next))
}

/// Add an interaction (purchase, call, email, chat, ticket, visit) to a customer's timeline.
#[utoipa::path(post, path = "/v1/orgs/{org}/interactions", tag = "customers", request_body = Interaction,
    params(OrgPath),
    responses((status = 201, description = "The interaction as stored"), (status = 422, description = "Denied by a policy")))]
async fn add_interaction(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let scope = caller.scope();
    let interaction: Interaction = json_body(&body)?;
    let out = blocking(&state, move |p: &Pipeline| {
        Ok(p.write_in(&org, &actor, &scope, Origin::Api, Write::AddInteraction(interaction))?)
    })
    .await?;
    Ok(created(written(out)))
}

/// Change a ticket's service state: status, category, due time, resolution (closing sets
/// `closed_at` unless given). Policies judge it as an update of the interaction: a branch's
/// service standard can require a resolution note before a ticket closes.
#[utoipa::path(put, path = "/v1/orgs/{org}/interactions/{id}/ticket", tag = "customers",
    request_body = crate::model::Ticket,
    params(OrgPath, ("id" = u64, Path, description = "The ticket interaction's id")),
    responses((status = 200, description = "The interaction as stored, with `changed`, `warnings`, `actions`"),
        (status = 400, description = "The interaction is not a ticket"),
        (status = 404, description = "No such interaction"),
        (status = 422, description = "Denied by a policy")))]
async fn update_ticket(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, interaction)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let scope = caller.scope();
    let interaction = id(&interaction)?;
    let ticket: crate::model::Ticket = json_body(&body)?;
    let out = blocking(&state, move |p: &Pipeline| {
        Ok(p.write_in(&org, &actor, &scope, Origin::Api, Write::UpdateTicket { interaction, ticket })?)
    })
    .await?;
    Ok(ok(written(out)))
}

/// Bulk import: customers, interactions or distributors as NDJSON or CSV, keyed by (source,
/// external id) so re-running it changes nothing; bad rows are reported by line.
#[utoipa::path(post, path = "/v1/orgs/{org}/import", tag = "customers",
    params(OrgPath,
        ("kind" = String, Query, description = "customers, interactions or distributors"),
        ("bypass_policies" = Option<bool>, Query, description = "Owner only: land rows without policies")),
    request_body(content = String, content_type = "application/x-ndjson", description = "One JSON object a line (or `text/csv`)"),
    responses((status = 200, description = "`{accepted, rejected: [{line, error}], ...}`"),
        (status = 413, description = "Body too large"), (status = 415, description = "Neither NDJSON nor CSV")))]
async fn import(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let kind = match q.get("kind").map(String::as_str) {
        Some("customers") => ImportKind::Customers,
        Some("interactions") => ImportKind::Interactions,
        Some("distributors") => ImportKind::Distributors,
        other => {
            return Err(ApiError::bad_request(format!(
                "`kind` must be customers, interactions or distributors (got {other:?})"
            ))
            .with_field(Some("kind".into())));
        }
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => ImportFormat::Ndjson,
        "text/csv" => ImportFormat::Csv,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                format!("send the records as `application/x-ndjson` or `text/csv`, not `{other}`"),
            ));
        }
    };
    let bypass = q.get("bypass_policies").is_some_and(|v| v == "true");
    if bypass && caller.require(&org, Role::Owner).is_err() {
        return Err(ApiError::forbidden("only an owner may import without policies"));
    }
    // Streamed: rows land batch by batch as the body arrives, whatever its size. A body cut off
    // (or over the upload limit without a Content-Length) ends the import with the batches
    // before it landed; re-running the same body changes nothing.
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = BufReader::with_capacity(256 << 10, SyncIoBridge::new(StreamReader::new(stream)));
    let report = blocking(&state, move |p| Ok(p.import(&org, &actor, kind, format, reader, |_| {}, bypass)?)).await?;
    Ok(ok(to_json(&report)))
}
