//! Plugins (an owner's), and what they compute: rescoring jobs, reports; and the audit log.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Caller, Role};
use super::{ApiError, OrgPath, State, blocking, created, id, json_body, ok, page, query_number, to_json};
use crate::model::Actor;
use crate::pipeline::{Format, Pipeline, PipelineError, render};
use crate::store::{FailureMode, PluginRow};

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(list_plugins))
        .routes(routes!(configure))
        .routes(routes!(enable))
        .routes(routes!(disable))
        .routes(routes!(versions))
        .routes(routes!(rollback))
        .routes(routes!(logs))
        .routes(routes!(order))
        .routes(routes!(failure_mode))
        .routes(routes!(set_shadow, shadow_report))
        .routes(routes!(dry_run))
        .routes(routes!(rescore))
        .routes(routes!(job))
        .routes(routes!(audit))
}

/// Routes that take large bodies or run long.
pub(super) fn bulk_routes() -> OpenApiRouter<State> {
    OpenApiRouter::new().routes(routes!(upload_plugin)).routes(routes!(run_report))
}

/// What an upload carries besides the component's bytes.
#[derive(Default)]
struct Upload {
    name: Option<String>,
    version: Option<String>,
    activate: Option<String>,
    config: Option<Value>,
    bytes: Bytes,
}

/// Read a multipart upload: a `component` file part, and optional `name`, `version`,
/// `activate` and `config` (JSON) fields.
async fn multipart(mut form: Multipart) -> Result<Upload, ApiError> {
    let bad =
        |e: axum::extract::multipart::MultipartError| ApiError::bad_request(format!("invalid multipart body: {e}"));
    let mut up = Upload::default();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "component" | "file" => up.bytes = field.bytes().await.map_err(bad)?,
            "name" => up.name = Some(field.text().await.map_err(bad)?),
            "version" => up.version = Some(field.text().await.map_err(bad)?),
            "activate" => up.activate = Some(field.text().await.map_err(bad)?),
            "config" => {
                let text = field.text().await.map_err(bad)?;
                up.config = Some(serde_json::from_str(&text).map_err(|e| {
                    ApiError::bad_request(format!("`config` is not JSON: {e}")).with_field(Some("config".into()))
                })?);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown form field `{other}`: send `component` (the .wasm file), and optionally `name`, \
                     `version`, `activate`, `config`"
                ))
                .with_field(Some(other.to_owned())));
            }
        }
    }
    Ok(up)
}

/// Upload a component: the raw bytes as `application/wasm` with `?name=` (and `?version=`,
/// `?activate=false`), or `multipart/form-data` with a `component` file and the same as fields.
/// It is checked (world, contract version, config schema) before it is stored.
#[utoipa::path(post, path = "/v1/orgs/{org}/plugins", tag = "plugins",
    params(OrgPath,
        ("name" = Option<String>, Query, description = "The plugin's name (required unless a form field)"),
        ("version" = Option<String>, Query, description = "The author's version label"),
        ("activate" = Option<bool>, Query, description = "Make it the active version (default true)")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses((status = 201, description = "The plugin as registered"), (status = 422, description = "Not a valid plugin component")))]
async fn upload_plugin(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
    request: Request,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut up = if content_type.starts_with("multipart/form-data") {
        multipart(Multipart::from_request(request, &state).await.map_err(|e| ApiError::bad_request(e.body_text()))?)
            .await?
    } else {
        let bytes = Bytes::from_request(request, &state).await.map_err(|e| {
            ApiError::new(e.status(), e.status().canonical_reason().unwrap_or("Bad request"), e.body_text())
        })?;
        Upload { bytes, ..Upload::default() }
    };
    up.name = up.name.or_else(|| q.get("name").cloned());
    up.version = up.version.or_else(|| q.get("version").cloned());
    up.activate = up.activate.or_else(|| q.get("activate").cloned());
    let name =
        up.name.ok_or_else(|| ApiError::bad_request("name the plugin: `?name=...`").with_field(Some("name".into())))?;
    if up.bytes.is_empty() {
        return Err(ApiError::bad_request("send the component's bytes as the body (`application/wasm`)"));
    }
    let activate = up.activate.is_none_or(|v| v != "false");
    let (bytes, version, config) = (up.bytes, up.version, up.config);
    let row =
        blocking(&state, move |p| Ok(p.install(&org, &actor, &name, &bytes, version.as_deref(), config, activate)?))
            .await?;
    Ok(created(to_json(&row)))
}

/// The organization's plugins, in the order policies run.
#[utoipa::path(get, path = "/v1/orgs/{org}/plugins", tag = "plugins",
    params(OrgPath),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn list_plugins(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let rows = blocking(&state, move |p| Ok(p.plugins(&org)?)).await?;
    Ok(page(&rows, None))
}

/// An owner's change to one plugin's settings (the caller's role checked before the body is
/// read); answers the plugin as it now is.
async fn change_plugin(
    actor: Actor,
    state: State,
    (org, name): (String, String),
    f: impl FnOnce(&Pipeline, &str, &Actor, &str) -> Result<PluginRow, PipelineError> + Send + 'static,
) -> Result<Response, ApiError> {
    let row = blocking(&state, move |p| Ok(f(p, &org, &actor, &name)?)).await?;
    Ok(ok(to_json(&row)))
}

/// Set a plugin's configuration; it is checked against the schema the component ships.
#[utoipa::path(put, path = "/v1/orgs/{org}/plugins/{name}/config", tag = "plugins", request_body = Object,
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin"), (status = 422, description = "The config does not fit the schema; `field` names where")))]
async fn configure(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    let config: Value = json_body(&body)?;
    change_plugin(actor, state, path, move |p, org, actor, name| p.configure(org, actor, name, config)).await
}

/// Enable a plugin: from the next write on, it judges (policy) or scores (scorer).
#[utoipa::path(post, path = "/v1/orgs/{org}/plugins/{name}/enable", tag = "plugins",
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin")))]
async fn enable(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    change_plugin(actor, state, path, |p, org, actor, name| p.enable(org, actor, name)).await
}

/// Disable a plugin.
#[utoipa::path(post, path = "/v1/orgs/{org}/plugins/{name}/disable", tag = "plugins",
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin")))]
async fn disable(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    change_plugin(actor, state, path, |p, org, actor, name| p.disable(org, actor, name)).await
}

/// Every uploaded version of a plugin.
#[utoipa::path(get, path = "/v1/orgs/{org}/plugins/{name}/versions", tag = "plugins",
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn versions(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::ReadOnly)?;
    let items = blocking(&state, move |p| Ok(p.versions(&org, &name)?)).await?;
    Ok(page(&items, None))
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct Rollback {
    /// The version to make active; the one before the active one by default.
    #[serde(default)]
    version: Option<u32>,
}

/// Make an earlier version active again.
#[utoipa::path(post, path = "/v1/orgs/{org}/plugins/{name}/rollback", tag = "plugins", request_body(content = Option<Rollback>),
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin")))]
async fn rollback(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    let to: Rollback = if body.is_empty() { Rollback::default() } else { json_body(&body)? };
    change_plugin(actor, state, path, move |p, org, actor, name| p.rollback(org, actor, name, to.version)).await
}

/// A plugin's execution trace, newest first: each call's outcome, duration, fuel and log lines.
#[utoipa::path(get, path = "/v1/orgs/{org}/plugins/{name}/logs", tag = "plugins",
    params(OrgPath, ("name" = String, Path, description = "The plugin's name"),
        ("before" = Option<i64>, Query, description = "Only traces older than this trace id")),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn logs(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let before: Option<i64> = query_number(&q, "before")?;
    let items = blocking(&state, move |p| Ok(p.traces(&org, &name, before, 200)?)).await?;
    let next = items.last().map(|t| t.id.to_string());
    Ok(page(&items, next))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Order {
    /// 1 is first.
    position: usize,
}

/// Move a policy to a place in the order policies run.
#[utoipa::path(put, path = "/v1/orgs/{org}/plugins/{name}/order", tag = "plugins", request_body = Order,
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "Every plugin, in the new order")))]
async fn order(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&org, Role::Owner)?;
    let Order { position } = json_body(&body)?;
    let rows = blocking(&state, move |p| Ok(p.reorder(&org, &actor, &name, position)?)).await?;
    Ok(page(&rows, None))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Mode {
    /// `closed` (a failing policy denies the write) or `open` (it warns).
    #[schema(value_type = String)]
    mode: FailureMode,
}

/// What a failing policy does to the write: deny it (closed) or let it land with a warning (open).
#[utoipa::path(put, path = "/v1/orgs/{org}/plugins/{name}/failure-mode", tag = "plugins", request_body = Mode,
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin")))]
async fn failure_mode(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    let Mode { mode } = json_body(&body)?;
    change_plugin(actor, state, path, move |p, org, actor, name| p.set_failure_mode(org, actor, name, mode)).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Shadow {
    /// The version to run beside the active one; null stops shadowing.
    version: Option<u32>,
}

/// Run another version beside the active one on live writes, recording only whether they agree.
#[utoipa::path(put, path = "/v1/orgs/{org}/plugins/{name}/shadow", tag = "plugins", request_body = Shadow,
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin")))]
async fn set_shadow(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(path): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = caller.require(&path.0, Role::Owner)?;
    let Shadow { version } = json_body(&body)?;
    change_plugin(actor, state, path, move |p, org, actor, name| p.set_shadow(org, actor, name, version)).await
}

/// How often the shadow version agreed with the active one.
#[utoipa::path(get, path = "/v1/orgs/{org}/plugins/{name}/shadow", tag = "plugins",
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "Agreements and disagreements")))]
async fn shadow_report(
    caller: Caller,
    Extract(state): Extract<State>,
    Path((org, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Owner)?;
    let report = blocking(&state, move |p| Ok(p.shadow_report(&org, &name)?)).await?;
    Ok(ok(to_json(&report)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DryRun {
    version: u32,
    /// Changes replayed (policies) or customers scored (scorers); 100 by default.
    #[serde(default)]
    sample: Option<u32>,
}

/// Replay recent changes (or score a sample) with another version, writing nothing, and show
/// where it would decide differently from the active one.
#[utoipa::path(post, path = "/v1/orgs/{org}/plugins/{name}/dry-run", tag = "plugins", request_body = DryRun,
    params(OrgPath, ("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The differences")))]
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
    Ok(ok(to_json(&run)))
}

/// Rescore every customer with the enabled scorers: a job, resumable across restarts.
#[utoipa::path(post, path = "/v1/orgs/{org}/scores/rescore", tag = "scores",
    params(OrgPath),
    responses((status = 202, description = "The job; `Location` is where to follow it")))]
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

/// A job's progress: `state` is `running`, `done` or `failed`.
#[utoipa::path(get, path = "/v1/orgs/{org}/jobs/{id}", tag = "scores",
    params(OrgPath, ("id" = i64, Path, description = "The job's id")),
    responses((status = 200, description = "The job"), (status = 404, description = "No such job")))]
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
    Ok(ok(to_json(&found)))
}

/// Run a reporter plugin with params: a table and a chart, as JSON, CSV or HTML (with an SVG chart).
#[utoipa::path(post, path = "/v1/orgs/{org}/reports/{plugin}/run", tag = "scores", request_body(content = Option<Object>),
    params(OrgPath, ("plugin" = String, Path, description = "The reporter"),
        ("format" = Option<String>, Query, description = "json (default), csv or html")),
    responses((status = 200, description = "`{columns, rows, chart}`, or its CSV or HTML rendering")))]
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

/// The audit log, oldest first: every accepted write with the policies' decisions.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "scores",
    params(OrgPath,
        ("cursor" = Option<i64>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "`{items, next_cursor}`")))]
async fn audit(
    caller: Caller,
    Extract(state): Extract<State>,
    Path(org): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.require(&org, Role::Manager)?;
    let after: Option<i64> = query_number(&q, "cursor")?;
    let items = blocking(&state, move |p| Ok(p.org(&org)?.audit(after.unwrap_or(0), 200)?)).await?;
    let next = (items.len() == 200).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(page(&items, next))
}
