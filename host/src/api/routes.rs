//! The routes of `design.md`'s interface points. Each handler: who may call it, what it reads,
//! which pipeline call it makes.

use std::collections::HashMap;
use std::io::Cursor;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::{Caller, Role, hash_token, new_token};
use super::{ApiError, State, blocking};
use crate::model::Entity;
use crate::model::{Actor, Customer, Interaction, Origin};
use crate::pipeline::{Format, Outcome, Pipeline, PipelineError, Write, render};
use crate::store::{FailureMode, ImportFormat, ImportKind, PluginRow};

type Params = Query<HashMap<String, String>>;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/orgs", post(create_org).get(list_orgs))
        .route("/v1/orgs/{org}", get(get_org))
        .route("/v1/orgs/{org}/keys", post(create_key).get(list_keys))
        .route("/v1/orgs/{org}/keys/{id}", delete(revoke_key))
        .route("/v1/orgs/{org}/customers", get(list_customers).post(create_customer))
        .route("/v1/orgs/{org}/customers/{id}", get(get_customer).put(update_customer).delete(erase_customer))
        .route("/v1/orgs/{org}/customers/{id}/export", get(export_customer))
        .route("/v1/orgs/{org}/customers/{id}/merge", post(merge_customer))
        .route("/v1/orgs/{org}/interactions", post(add_interaction))
        .route("/v1/orgs/{org}/import", post(import))
        .route("/v1/orgs/{org}/plugins", post(upload_plugin).get(list_plugins))
        .route("/v1/orgs/{org}/plugins/{name}/config", put(configure))
        .route("/v1/orgs/{org}/plugins/{name}/enable", post(enable))
        .route("/v1/orgs/{org}/plugins/{name}/disable", post(disable))
        .route("/v1/orgs/{org}/plugins/{name}/versions", get(versions))
        .route("/v1/orgs/{org}/plugins/{name}/rollback", post(rollback))
        .route("/v1/orgs/{org}/plugins/{name}/logs", get(logs))
        .route("/v1/orgs/{org}/plugins/{name}/order", put(order))
        .route("/v1/orgs/{org}/plugins/{name}/failure-mode", put(failure_mode))
        .route("/v1/orgs/{org}/plugins/{name}/shadow", put(set_shadow).get(shadow_report))
        .route("/v1/orgs/{org}/plugins/{name}/dry-run", post(dry_run))
        .route("/v1/orgs/{org}/scores/rescore", post(rescore))
        .route("/v1/orgs/{org}/jobs/{id}", get(job))
        .route("/v1/orgs/{org}/reports/{plugin}/run", post(run_report))
        .route("/v1/orgs/{org}/audit", get(audit))
        .fallback(|| async { ApiError::not_found("no such route; see `design.md` for the API") })
}

/// Parse a JSON body strictly, with the serde message (which names the field) as the detail.
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("`{text}` is not an id (a positive integer)")))
}

fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("API values serialize")
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    slug: String,
    name: String,
}

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

async fn list_orgs(caller: Caller, Extract(state): Extract<State>) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let orgs = blocking(&state, |p| Ok(p.store().orgs()?)).await?;
    Ok(axum::Json(json!({ "items": orgs, "next_cursor": null })).into_response())
}

async fn get_org(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let found = blocking(&state, move |p| Ok(p.org(&org)?.org().clone())).await?;
    Ok(axum::Json(to_json(&found)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    role: String,
}

async fn create_key(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let new: NewKey = json_body(&body)?;
    if Role::parse(&new.role).is_none() {
        return Err(ApiError::bad_request(format!(
            "unknown role `{}`: use owner, manager, agent or read-only",
            new.role
        ))
        .with_field(Some("role".into())));
    }
    let token = new_token("rk");
    let hash = hash_token(&token);
    let key = blocking(&state, move |p| Ok(p.org(&org)?.create_key(&new.name, &new.role, &hash)?)).await?;
    let mut out = to_json(&key);
    out["token"] = json!(token);
    Ok(created(out))
}

async fn list_keys(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let keys = blocking(&state, move |p| Ok(p.org(&org)?.keys()?)).await?;
    Ok(axum::Json(json!({ "items": keys, "next_cursor": null })).into_response())
}

async fn list_customers(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let page = blocking(&state, move |p| {
        let store = p.org(&org)?;
        if let (Some(source), Some(ext)) = (q.get("source"), q.get("external_id")) {
            let items: Vec<Customer> = store.find_customer(source, ext)?.into_iter().collect();
            return Ok(json!({ "items": items, "next_cursor": null }));
        }
        let limit = match q.get("limit") {
            Some(l) => l.parse().map_err(|_| ApiError::bad_request(format!("`limit` must be a number, got `{l}`")))?,
            None => 50,
        };
        let filter = q.get("filter").map_or("", String::as_str);
        let page = store.list_customers(filter, q.get("cursor").map(String::as_str), limit)?;
        Ok(to_json(&page))
    })
    .await?;
    Ok(axum::Json(page).into_response())
}

async fn create_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let customer: Customer = json_body(&body)?;
    let out =
        blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::CreateCustomer(customer))?)).await?;
    Ok(created(written(out)))
}

/// A write's answer: the record as stored, with the policies' warnings and the follow-up actions.
fn written(out: Outcome) -> Value {
    let mut record = match out.record {
        Some(Entity::Customer(c)) => to_json(&c),
        Some(Entity::Interaction(i)) => to_json(&i),
        Some(other) => to_json(&other),
        None => json!({}),
    };
    record["warnings"] = to_json(&out.warnings);
    record["actions"] = to_json(&out.actions);
    record
}

async fn update_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let id = id(&customer)?;
    let mut customer: Customer = json_body(&body)?;
    customer.id = id;
    let out =
        blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::UpdateCustomer(customer))?)).await?;
    let changed = out.changed;
    let mut body = written(out);
    body["changed"] = json!(changed);
    Ok(axum::Json(body).into_response())
}

async fn erase_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let id = id(&customer)?;
    blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Erase, Write::EraseCustomer(id))?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn export_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let id = id(&customer)?;
    let doc = blocking(&state, move |p| {
        p.org(&org)?.export(id)?.ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))
    })
    .await?;
    Ok(axum::Json(doc).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Merge {
    /// The duplicate merged into the customer of the path, which stays.
    remove: u64,
}

async fn merge_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let keep = id(&customer)?;
    let Merge { remove } = json_body(&body)?;
    let out =
        blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Merge, Write::MergeCustomers { keep, remove })?))
            .await?;
    Ok(axum::Json(written(out)).into_response())
}

async fn add_interaction(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Agent)?;
    let interaction: Interaction = json_body(&body)?;
    let out =
        blocking(&state, move |p| Ok(p.write(&org, &actor, Origin::Api, Write::AddInteraction(interaction))?)).await?;
    Ok(created(written(out)))
}

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

async fn get_customer(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, customer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let customer = id(&customer)?;
    let profile = blocking(&state, move |p| {
        p.org(&org)?
            .profile(customer, 50)?
            .ok_or_else(|| ApiError::not_found(format!("customer {customer} does not exist")))
    })
    .await?;
    Ok(axum::Json(to_json(&profile)).into_response())
}

async fn import(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
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
    let report =
        blocking(&state, move |p| Ok(p.import(&org, &actor, kind, format, Cursor::new(body), |_| {}, bypass)?)).await?;
    Ok(axum::Json(to_json(&report)).into_response())
}

async fn upload_plugin(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let name = q
        .get("name")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("name the plugin: `?name=...`").with_field(Some("name".into())))?;
    let author_version = q.get("version").cloned();
    let activate = q.get("activate").is_none_or(|v| v != "false");
    if body.is_empty() {
        return Err(ApiError::bad_request("send the component's bytes as the body (`application/wasm`)"));
    }
    let row = blocking(&state, move |p| {
        Ok(p.install(&org, &actor, &name, &body, author_version.as_deref(), None, activate)?)
    })
    .await?;
    Ok(created(to_json(&row)))
}

async fn list_plugins(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let rows = blocking(&state, move |p| Ok(p.plugins(&org)?)).await?;
    Ok(axum::Json(json!({ "items": rows, "next_cursor": null })).into_response())
}

/// An owner's change to one plugin's settings; answers the plugin as it now is.
async fn change_plugin(
    caller: Caller,
    state: State,
    (org, name): (String, String),
    f: impl FnOnce(&Pipeline, &str, &Actor, &str) -> Result<PluginRow, PipelineError> + Send + 'static,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let row = blocking(&state, move |p| Ok(f(p, &org, &actor, &name)?)).await?;
    Ok(axum::Json(to_json(&row)).into_response())
}

async fn configure(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let config: Value = json_body(&body)?;
    change_plugin(caller, state, path, move |p, org, actor, name| p.configure(org, actor, name, config)).await
}

async fn enable(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change_plugin(caller, state, path, |p, org, actor, name| p.enable(org, actor, name)).await
}

async fn disable(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    change_plugin(caller, state, path, |p, org, actor, name| p.disable(org, actor, name)).await
}

async fn versions(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let items = blocking(&state, move |p| Ok(p.versions(&org, &name)?)).await?;
    Ok(axum::Json(json!({ "items": items, "next_cursor": null })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rollback {
    #[serde(default)]
    version: Option<u32>,
}

async fn rollback(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let to: Rollback = if body.is_empty() { Rollback::default() } else { json_body(&body)? };
    change_plugin(caller, state, path, move |p, org, actor, name| p.rollback(org, actor, name, to.version)).await
}

async fn logs(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let before = q
        .get("before")
        .map(|b| b.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::bad_request("`before` must be a trace id"))?;
    let items = blocking(&state, move |p| Ok(p.traces(&org, &name, before, 200)?)).await?;
    let next = items.last().map(|t| t.id.to_string());
    Ok(axum::Json(json!({ "items": items, "next_cursor": next })).into_response())
}

async fn rescore(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Manager)?;
    let location = format!("/v1/orgs/{org}/jobs/");
    let job = blocking(&state, move |p| Ok(p.spawn_rescore(&org, &actor)?)).await?;
    let location = format!("{location}{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(to_json(&job))).into_response())
}

async fn job(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let job = id(&job)? as i64;
    let found = blocking(&state, move |p| {
        p.org(&org)?.job(job)?.ok_or_else(|| ApiError::not_found(format!("job {job} does not exist")))
    })
    .await?;
    Ok(axum::Json(to_json(&found)).into_response())
}

async fn run_report(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, plugin)): Path<(String, String)>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let format: Format = q
        .get("format")
        .map_or(Ok(Format::Json), |f| f.parse())
        .map_err(|e: String| ApiError::bad_request(e).with_field(Some("format".into())))?;
    let params: Value = if body.is_empty() { json!({}) } else { json_body(&body)? };
    let report = blocking(&state, move |p| Ok(p.run_report(&org, &plugin, &params)?)).await?;
    let (content_type, text) = render(&report, format);
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

async fn audit(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let after =
        q.get("cursor").map(|c| c.parse::<i64>()).transpose().map_err(|_| ApiError::bad_request("invalid cursor"))?;
    let items = blocking(&state, move |p| Ok(p.org(&org)?.audit(after.unwrap_or(0), 200)?)).await?;
    let next = (items.len() == 200).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(axum::Json(json!({ "items": items, "next_cursor": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Order {
    /// 1 is first.
    position: usize,
}

async fn order(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let Order { position } = json_body(&body)?;
    let rows = blocking(&state, move |p| Ok(p.reorder(&org, &actor, &name, position)?)).await?;
    Ok(axum::Json(json!({ "items": rows, "next_cursor": null })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mode {
    mode: FailureMode,
}

async fn failure_mode(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Mode { mode } = json_body(&body)?;
    change_plugin(caller, state, path, move |p, org, actor, name| p.set_failure_mode(org, actor, name, mode)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shadow {
    /// The version to run beside the active one; null stops shadowing.
    version: Option<u32>,
}

async fn set_shadow(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Shadow { version } = json_body(&body)?;
    change_plugin(caller, state, path, move |p, org, actor, name| p.set_shadow(org, actor, name, version)).await
}

async fn shadow_report(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let report = blocking(&state, move |p| Ok(p.shadow_report(&org, &name)?)).await?;
    Ok(axum::Json(to_json(&report)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRun {
    version: u32,
    /// Changes replayed (policies) or customers scored (scorers); 100 by default.
    #[serde(default)]
    sample: Option<u32>,
}

async fn dry_run(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let DryRun { version, sample } = json_body(&body)?;
    let run =
        blocking(&state, move |p| Ok(p.dry_run(&org, &name, version, sample.unwrap_or(100).min(10_000))?)).await?;
    Ok(axum::Json(to_json(&run)).into_response())
}
