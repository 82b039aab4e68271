//! The admin HTTP API (`rapport serve`): axum handlers over the write pipeline. Handlers are
//! small: authenticate, check the role, run the pipeline on a blocking thread (SQLite and plugin
//! calls block), answer JSON — or `application/problem+json` through [`ApiError`].
//!
//! Every route is declared once, with its `#[utoipa::path]`, and registered through
//! `utoipa_axum::routes!`: the router and `/openapi.json` come from the same declarations, so the
//! contract cannot drift from what is served.

mod auth;
mod customers;
mod directory;
mod error;
mod meta;
mod orgs;
mod plugins;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{Caller, Role, Scope, hash_token, new_token, place};
pub use error::ApiError;

use crate::pipeline::Pipeline;
use crate::webhooks::WebhookConfig;

/// Everything a handler needs, in one struct.
pub struct AppState {
    pub pipeline: Pipeline,
    /// sha256 of the admin token.
    pub admin_hash: String,
    pub limits: HttpLimits,
    /// How long shutdown waits for running jobs.
    pub shutdown_grace: Duration,
    pub webhooks: WebhookConfig,
    /// Origins a browser may call the API from (CORS); none by default.
    pub cors_origins: Vec<HeaderValue>,
    /// The web console's signed-in sessions (in memory).
    pub console: crate::console::Sessions,
}

pub type State = Arc<AppState>;

/// How much a request may ask of the server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// The largest JSON body.
    pub body: usize,
    /// The largest import or plugin upload.
    pub upload: usize,
    /// How long an ordinary request may take.
    pub timeout: Duration,
    /// How long an import, upload or report may take.
    pub long_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body: 2 << 20,
            upload: 256 << 20,
            timeout: Duration::from_secs(30),
            long_timeout: Duration::from_secs(600),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rapport admin API",
        description = "Organizations, their customers and interactions, plugins, scores, reports and \
                       the audit log. Authenticate with `Authorization: Bearer <token>`: the admin \
                       token manages organizations, an organization's API key works in that \
                       organization with its role (owner, manager, agent, read-only). Errors are \
                       `application/problem+json`."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "server", description = "Health, metrics and this contract"),
        (name = "orgs", description = "Organizations and their API keys"),
        (name = "customers", description = "Customers, interactions, imports and privacy requests"),
        (name = "directory", description = "Branches, distributors and their sponsor tree, segments"),
        (name = "plugins", description = "Plugin components: upload, configure, order, roll back, trial"),
        (name = "scores", description = "Scores, rescoring jobs, reports and the audit log"),
        (name = "webhooks", description = "Outbound webhooks: endpoints, signed deliveries and their log"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its OpenAPI description. Imports and uploads get the larger body limit and
/// the longer timeout; everything else the small ones.
fn api(limits: &HttpLimits) -> OpenApiRouter<State> {
    let ordinary = OpenApiRouter::new()
        .merge(meta::routes())
        .merge(orgs::routes())
        .merge(customers::routes())
        .merge(directory::routes())
        .merge(plugins::routes())
        .merge(webhooks::routes())
        .layer(DefaultBodyLimit::max(limits.body))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.timeout));
    let bulk = OpenApiRouter::new()
        .merge(customers::bulk_routes())
        .merge(plugins::bulk_routes())
        .layer(DefaultBodyLimit::max(limits.upload))
        // The import streams its body past `DefaultBodyLimit`; this bounds it (413 up front
        // when the Content-Length says so).
        .layer(RequestBodyLimitLayer::new(limits.upload))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.long_timeout));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(ordinary).merge(bulk)
}

/// The OpenAPI 3.1 document of every route the router serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api(&HttpLimits::default()).split_for_parts().1
}

pub fn router(state: State) -> Router {
    let (routes, _) = api(&state.limits).split_for_parts();
    let request_id = HeaderName::from_static("x-request-id");
    routes
        .merge(crate::console::router(&state))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(observe))
        .layer(axum::middleware::map_response(problem_for_bare_errors))
        .layer(cors(&state.cors_origins))
        .layer(CompressionLayer::new())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// An unknown path: problem+json under `/v1`, the console's 404 page anywhere else.
async fn fallback(axum::extract::State(state): axum::extract::State<State>, req: Request) -> Response {
    if req.uri().path().starts_with("/v1") {
        return ApiError::not_found("no such route; the API is described at /openapi.json and /docs").into_response();
    }
    crate::console::not_found(&state, req.headers()).await
}

/// Cross-origin calls from browsers: off (no CORS headers, so browsers refuse) unless origins are
/// configured.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    if origins.is_empty() {
        return CorsLayer::new();
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_MATCH])
        .expose_headers([header::ETAG, header::LOCATION, HeaderName::from_static("x-request-id")])
}

/// Count every request by route and status, and time it.
async fn observe(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    crate::metrics::http(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// Errors made outside our handlers (a body over the limit, a timeout, a wrong method, axum's
/// own extractor rejections) arrive as plain text or empty: answer them as problem+json too, so
/// a client parses one error shape.
async fn problem_for_bare_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/problem+json"));
    // The console's pages are HTML for a person, and stay so.
    let is_html = response.headers().get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_html {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    let detail = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this route accepts; split an import into smaller files".to_owned()
        }
        StatusCode::REQUEST_TIMEOUT => "the request took longer than the server allows; try a smaller request".into(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this route does not answer that method; the `Allow` header and /openapi.json list the ones it does".into()
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
        _ => text,
    };
    let mut answer = ApiError::new(status, status.canonical_reason().unwrap_or("Error"), detail).into_response();
    for name in [header::ALLOW, HeaderName::from_static("x-request-id")] {
        if let Some(v) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    answer
}

/// Serve until Ctrl-C or SIGTERM; requests in flight finish first, then jobs in flight.
///
/// The webhook worker and the key-use flusher run beside the server and stop after it (the
/// flusher writing the last requests' key uses as it stops).
pub async fn serve(listener: tokio::net::TcpListener, state: State) -> std::io::Result<()> {
    let worker = crate::webhooks::Worker::start(state.pipeline.store().clone(), state.webhooks.clone())?;
    let key_uses = crate::store::KeyUseFlusher::start(state.pipeline.store().clone(), crate::store::KEY_USE_FLUSH)?;
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await;
    // Joining waits for a request in flight, which its timeouts bound.
    tokio::task::spawn_blocking(move || worker.stop()).await.map_err(std::io::Error::other)?;
    tokio::task::spawn_blocking(move || key_uses.stop()).await.map_err(std::io::Error::other)?;
    served?;
    let (pipeline, grace) = (state.pipeline.clone(), state.shutdown_grace);
    tokio::task::spawn_blocking(move || pipeline.wait_for_jobs(grace)).await.map_err(std::io::Error::other)?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests and jobs in flight");
}

/// Run blocking work (SQLite, plugin calls) off the async runtime, in the request's span so its
/// log lines carry the request id.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce(&Pipeline) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| f(&state.pipeline)))
        .await
        .map_err(|e| ApiError::internal(format!("a request handler panicked: {e}")))?
}

/// The organization in a route's path, for the OpenAPI document (`params(OrgPath, ...)`);
/// handlers extract it as a plain `Path<String>`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct OrgPath {
    /// The organization's slug.
    org: String,
}

/// Parse a JSON body strictly, with the serde message (which names the field) as the detail.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        // serde names the offending field as "unknown field `x`" or "missing field `x`".
        let field = text.split('`').nth(1).filter(|_| text.contains(" field `")).map(str::to_owned);
        ApiError::bad_request(format!("invalid JSON body: {text}")).with_field(field)
    })
}

/// A number from the query string, if given; a 400 naming the parameter when it is not one.
pub(crate) fn query_number<T: std::str::FromStr>(
    q: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("`{name}` must be a number, got `{v}`")).with_field(Some(name.into()))
            })
        })
        .transpose()
}

pub(crate) fn id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("`{text}` is not an id (a positive integer)")))
}

pub(crate) fn created(value: Value) -> Response {
    (StatusCode::CREATED, axum::Json(value)).into_response()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("API values serialize")
}

pub(crate) fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// A page of a list: `{"items": [...], "next_cursor": ...}`.
pub(crate) fn page<T: serde::Serialize>(items: &[T], next: Option<String>) -> Response {
    ok(serde_json::json!({ "items": items, "next_cursor": next }))
}
