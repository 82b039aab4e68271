//! Outbound webhooks (an owner's): register an endpoint for some event kinds (its signing secret
//! is in the answer, and only there), list and delete endpoints, read an endpoint's delivery log.
//! `crate::webhooks` sends the deliveries.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Role, new_token};
use super::{ApiError, OrgPath, State, blocking, created, id, json_body, page, query_number, to_json};
use crate::store::EVENT_KINDS;

/// Delivery log lines per page.
const LOG_PAGE: u32 = 200;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(deliveries))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    /// Where events are POSTed: an absolute `http://` or `https://` URL.
    url: String,
    /// The event kinds to receive: `customer.created`, `customer.updated`, `customer.erased`,
    /// `interaction.added`, `policy.denied`, `score.changed`, `job.finished`.
    events: Vec<String>,
}

/// Register an endpoint. Each delivery is signed: `Rapport-Signature: t=<unix seconds>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`; the `secret` is in this answer and never shown again.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks", tag = "webhooks", request_body = NewWebhook,
    params(OrgPath),
    responses((status = 201, description = "The endpoint with its `secret`, shown once"),
        (status = 400, description = "A bad `url` or an unknown event kind; `field` says which")))]
async fn create_webhook(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let new: NewWebhook = json_body(&body)?;
    check_url(&new.url)?;
    let events = check_events(new.events)?;
    let secret = new_token("whsec");
    let shown = secret.clone();
    let endpoint =
        blocking(&state, move |p| Ok(p.org(&org)?.create_webhook(&actor, &new.url, &events, &secret)?)).await?;
    let mut out = to_json(&endpoint);
    out["secret"] = json!(shown);
    Ok(created(out))
}

/// The organization's endpoints (never their secrets).
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks", tag = "webhooks",
    params(OrgPath),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_webhooks(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let items = blocking(&state, move |p| Ok(p.org(&org)?.webhooks()?)).await?;
    Ok(page(&items, None))
}

/// Delete an endpoint: nothing more is sent to it, and its delivery log goes with it.
#[utoipa::path(delete, path = "/v1/orgs/{org}/webhooks/{id}", tag = "webhooks",
    params(OrgPath, ("id" = u64, Path, description = "The endpoint's id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such endpoint")))]
async fn delete_webhook(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, webhook)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let webhook = id(&webhook)? as i64;
    let deleted = blocking(&state, move |p| Ok(p.org(&org)?.delete_webhook(&actor, webhook)?)).await?;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("webhook {webhook} does not exist")))
    }
}

/// An endpoint's delivery log, newest first: each event's kind, state (`queued`, `delivered`,
/// `failed`), attempts, the last answer's status, the last failure, and when.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks/{id}/deliveries", tag = "webhooks",
    params(OrgPath, ("id" = u64, Path, description = "The endpoint's id"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`"), (status = 404, description = "No such endpoint")))]
async fn deliveries(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, webhook)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let webhook = id(&webhook)? as i64;
    let before: Option<i64> = query_number(&q, "cursor")?;
    let items = blocking(&state, move |p| {
        p.org(&org)?
            .webhook_deliveries(webhook, before, LOG_PAGE)?
            .ok_or_else(|| ApiError::not_found(format!("webhook {webhook} does not exist")))
    })
    .await?;
    let next = (items.len() == LOG_PAGE as usize).then(|| items.last().map(|d| d.id.to_string())).flatten();
    Ok(page(&items, next))
}

fn check_url(url: &str) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("`{url}` {why}")).with_field(Some("url".into()));
    if url.len() > 2048 {
        return Err(bad("is longer than 2048 characters"));
    }
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL; use an absolute http:// or https:// URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("must start with http:// or https://"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host; use an absolute URL like https://example.com/hooks/rapport"));
    }
    Ok(())
}

/// The kinds subscribed to, each known and once.
fn check_events(mut events: Vec<String>) -> Result<Vec<String>, ApiError> {
    let field = || Some("events".to_owned());
    let known = EVENT_KINDS.join(", ");
    if events.is_empty() {
        return Err(ApiError::bad_request(format!("subscribe to at least one event kind: {known}")).with_field(field()));
    }
    if let Some(unknown) = events.iter().find(|e| !EVENT_KINDS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(format!("unknown event kind `{unknown}`; use {known}")).with_field(field()));
    }
    events.sort();
    events.dedup();
    Ok(events)
}
