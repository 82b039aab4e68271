//! The server's own routes: health, Prometheus metrics, the OpenAPI contract and its docs page.
//! None needs a token: a load balancer, a scraper and a newcomer's browser call them bare.

use std::sync::OnceLock;

use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, State, blocking, ok};
use crate::metrics::JobProgress;

pub(super) fn routes() -> OpenApiRouter<State> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(docs))
}

/// Liveness and readiness: the database answers.
#[utoipa::path(get, path = "/healthz", tag = "server", security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`"), (status = 500, description = "The database does not answer")))]
async fn healthz(Extract(state): Extract<State>) -> Result<Response, ApiError> {
    blocking(&state, |p| Ok(p.store().ping()?)).await?;
    Ok(ok(json!({ "status": "ok" })))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "server", security(()),
    responses((status = 200, description = "Requests by route and status with latencies, plugin calls by plugin and \
        outcome, fuel used, limit hits, running jobs' progress",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(Extract(state): Extract<State>) -> Result<Response, ApiError> {
    let jobs = blocking(&state, |p| {
        Ok(p.store()
            .unfinished_jobs()?
            .into_iter()
            .map(|(org, j)| JobProgress { org, job: j.id, kind: j.kind, done: j.done, total: j.total })
            .collect::<Vec<_>>())
    })
    .await?;
    let text = crate::metrics::render(&jobs);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// This contract, as OpenAPI 3.1.
#[utoipa::path(get, path = "/openapi.json", tag = "server", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
async fn openapi_json() -> Response {
    static SPEC: OnceLock<String> = OnceLock::new();
    let text = SPEC.get_or_init(|| super::openapi().to_pretty_json().expect("the OpenAPI document serializes"));
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}

/// A page that reads `/openapi.json` and lists every operation with its parameters and answers.
#[utoipa::path(get, path = "/docs", tag = "server", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html")))]
async fn docs() -> Html<&'static str> {
    Html(DOCS)
}

/// Self-contained on purpose: the usual OpenAPI viewers (Swagger UI, Redoc, Scalar) load their
/// scripts from a CDN or download them at build time, and a self-hosted CRM is often run where
/// neither reaches the internet. This page needs nothing but the server.
const DOCS: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Rapport API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:1rem 2rem;color:#1d2433}
h1{margin-bottom:0}h2{border-bottom:1px solid #dde;margin-top:2rem}
details{border:1px solid #dde;border-radius:6px;margin:.4rem 0;padding:.3rem .7rem}
summary{cursor:pointer}code,pre{font:13px ui-monospace,monospace}
.m{display:inline-block;width:4.2rem;font-weight:600}.get{color:#17a}.post{color:#181}.put{color:#a71}.delete{color:#b22}
table{border-collapse:collapse}td{padding:.1rem .6rem .1rem 0;vertical-align:top}
pre{background:#f5f6f8;padding:.5rem;overflow:auto}
</style></head><body>
<h1>Rapport API</h1><p id="intro"></p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Send <code>Authorization: Bearer &lt;token&gt;</code>.</p>
<div id="api">Loading…</div>
<script>
const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const ref = (spec, s) => s && s.$ref ? spec.components.schemas[s.$ref.split("/").pop()] : s;
fetch("/openapi.json").then(r => r.json()).then(spec => {
  document.getElementById("intro").textContent = spec.info.description || "";
  const byTag = {};
  for (const [path, item] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(item))
      (byTag[(op.tags || ["other"])[0]] ??= []).push({path, method, op});
  let html = "";
  for (const t of spec.tags || []) {
    html += `<h2>${esc(t.name)}</h2><p>${esc(t.description)}</p>`;
    for (const {path, method, op} of byTag[t.name] || []) {
      const params = (op.parameters || []).map(p =>
        `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}${p.required ? ", required" : ""}</td><td>${esc(p.description)}</td></tr>`).join("");
      const body = op.requestBody ? Object.entries(op.requestBody.content).map(([ct, c]) =>
        `<p>Body: <code>${esc(ct)}</code></p><pre>${esc(JSON.stringify(ref(spec, c.schema), null, 2))}</pre>`).join("") : "";
      const answers = Object.entries(op.responses || {}).map(([code, r]) =>
        `<tr><td><code>${esc(code)}</code></td><td>${esc(r.description)}</td></tr>`).join("");
      html += `<details><summary><span class="m ${method}">${method.toUpperCase()}</span><code>${esc(path)}</code> — ${esc(op.summary || "")}</summary>
        <p>${esc(op.description || "")}</p>${params ? `<table>${params}</table>` : ""}${body}<p>Answers:</p><table>${answers}</table></details>`;
    }
  }
  document.getElementById("api").innerHTML = html;
});
</script></body></html>"#;
