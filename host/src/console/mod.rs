//! The web console: server-rendered HTML (maud) with htmx for progressive enhancement, served by
//! `rapport serve` at `/` beside the API. Handlers call the same pipeline and store functions as
//! the API, as the same [`Caller`], so a key sees in the console exactly what it sees over HTTP.
//!
//! # How to add a page
//!
//! 1. In the page group's file (`customers.rs`, `import.rs`…), add a route to its
//!    `routes() -> Router<State>`: `.route("/orgs/{org}/thing", get(show).post(save))`.
//! 2. Take an [`OrgPage`] as the handler's first argument: it is the signed-in session (or a
//!    redirect to the sign-in page), the organization of the URL checked against the caller (a
//!    key of another organization gets the 404 page), and `page.actor` for writes. `page.caller`
//!    is the [`Caller`]: `page.require(Role::Manager)?` for a role, `page.caller.scope()` for the
//!    agent's row-level scope (use it exactly as the API handler of the same data does).
//! 3. Do the work with `page.blocking(move |p| { ... }).await?` (the pipeline `p` on a blocking
//!    thread; store/pipeline errors become the error page: 404, 403, or the message).
//! 4. Answer `page.render(Nav::Thing, title, html! { ... })`: [`Ctx::render`] wraps the body in
//!    the layout (header, navigation, language switch, sign-out).
//! 5. Forms: `method="post"` with `(page.csrf_field())` inside. Every POST is checked by
//!    [`csrf_guard`] before any handler runs (the hidden `_csrf` field of a urlencoded form, the
//!    `x-csrf-token` header htmx sends, or `?_csrf=` in the action URL of a multipart form —
//!    `page.csrf` is the token); a missing or wrong token is the 403 page.
//! 6. Labels: declare them with [`i18n::labels!`] (both languages are required), in
//!    `i18n.rs` for shared ones or in the page's own file; write `page.t(L::Name)`. Dates:
//!    `page.datetime(ms)`; money: [`i18n::money`].

pub mod i18n;

mod audit;
mod customers;
mod dashboard;
mod distributors;
mod import;
mod plugins;
mod reports;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, Request, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::api::{ApiError, Caller, Role, Scope, State, hash_token, new_token};
use crate::model::Actor;
use crate::pipeline::Pipeline;
pub use i18n::{Era, L, Lang};

const SESSION_COOKIE: &str = "rapport_session";
const LANG_COOKIE: &str = "rapport_lang";
const ERA_COOKIE: &str = "rapport_era";
/// A session unused this long is signed out.
const IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// The console's routes. The server merges them beside the API; its fallback answers the
/// console's 404 page for any path outside `/v1` ([`not_found`]).
pub fn router(state: &State) -> Router<State> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", axum::routing::post(sign_out))
        .route("/prefs", get(prefs))
        .route("/assets/{file}", get(asset))
        .merge(dashboard::routes())
        .merge(customers::routes())
        .merge(audit::routes())
        .merge(import::routes())
        .merge(plugins::routes())
        .merge(reports::routes())
        .merge(distributors::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), csrf_guard))
        .layer(axum::middleware::map_response(protect))
        // Uploads turn axum's default limit off while they stream to disk; this bounds every
        // console body (the form fields of an upload included) by the server's upload limit,
        // and every console request by the long timeout, as the API's bulk routes are.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(state.limits.upload))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.limits.long_timeout,
        ))
}

/// Headers on every console answer: scripts and styles only from this server (htmx and the CSS
/// under `/assets/`; no inline script anywhere), no framing (clickjacking), no MIME sniffing.
async fn protect(mut response: Response) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    response
}

// ----- sessions -----

/// Signed-in sessions, held in memory: a restart signs everyone out. The session keeps the
/// token's hash, not the caller: each request resolves it again, so a revoked key or a changed
/// role takes effect at once.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

struct Session {
    token_hash: String,
    csrf: String,
    seen: Instant,
    /// What the next page of this session shows once, see [`Ctx::flash`].
    flash: Option<Flash>,
}

/// A message for the page a form redirects to after it succeeded (the result of the form, a
/// plugin's warnings): the redirect makes a reload show the page again instead of re-sending the
/// form, and the message goes through the session rather than the URL so that a link cannot put
/// words on a page.
struct Flash {
    /// The path of the page to show it on.
    path: String,
    notice: Markup,
}

impl Sessions {
    fn open(&self, token_hash: String) -> (String, String) {
        let (id, csrf) = (new_token("rs"), new_token("csrf"));
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.seen.elapsed() < IDLE);
        map.insert(id.clone(), Session { token_hash, csrf: csrf.clone(), seen: Instant::now(), flash: None });
        (id, csrf)
    }

    /// The session's token hash and CSRF token, if it exists and is not idle too long.
    fn touch(&self, id: &str) -> Option<(String, String)> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(id) {
            Some(s) if s.seen.elapsed() < IDLE => {
                s.seen = Instant::now();
                Some((s.token_hash.clone(), s.csrf.clone()))
            }
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    fn close(&self, id: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    fn set_flash(&self, id: &str, flash: Flash) {
        if let Some(s) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            s.flash = Some(flash);
        }
    }

    /// The session's flash, removed: shown by the next page only, and only if it is the page the
    /// flash was meant for (a flash whose redirect was not followed is dropped, not shown later).
    fn take_flash(&self, id: &str, path: &str) -> Option<Markup> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get_mut(id).and_then(|s| s.flash.take()).filter(|f| f.path == path).map(|f| f.notice)
    }
}

/// Who a token's hash belongs to, checked exactly as the API's `Caller` extractor does: the
/// admin token's hash in constant time, then the organization keys by hash.
async fn resolve(state: &State, hash: String) -> Result<Option<Caller>, ApiError> {
    if bool::from(hash.as_bytes().ct_eq(state.admin_hash.as_bytes())) {
        return Ok(Some(Caller::Admin));
    }
    let owner = crate::api::blocking(state, move |p| Ok(p.store().key_by_hash(&hash)?)).await?;
    Ok(owner.map(|o| Caller::Key {
        org: o.org_slug,
        name: o.key.name,
        role: Role::parse(&o.key.role).unwrap_or(Role::ReadOnly),
        scope: Scope { branch: o.key.branch, distributor: o.key.distributor },
    }))
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers).get(SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// The request came over TLS (directly behind a proxy that says so): the cookie gets `Secure`.
fn over_tls(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn prefs_of(headers: &HeaderMap) -> (Lang, Era) {
    let jar = CookieJar::from_headers(headers);
    let lang = jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())).unwrap_or_else(|| {
        headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).map_or(Lang::En, Lang::from_accept_language)
    });
    let era = match (jar.get(ERA_COOKIE).map(|c| c.value().to_owned()).as_deref(), lang) {
        (Some("ce"), _) => Era::Common,
        (Some("be"), _) | (None, Lang::Th) => Era::Buddhist,
        _ => Era::Common,
    };
    (lang, era)
}

// ----- the request context -----

/// A signed-in request: who, the CSRF token, the language. Extracting it from a request without
/// a live session answers a redirect to the sign-in page.
#[derive(Clone)]
pub struct Ctx {
    pub caller: Caller,
    pub csrf: String,
    pub lang: Lang,
    pub era: Era,
    /// The organization the page is about (set by [`OrgPage`]), for the navigation.
    pub org: Option<String>,
    /// The path and query of this request, for the language switch to come back to.
    pub here: String,
    /// The message of the form that redirected here, shown above the page by [`Ctx::render`].
    flash: Option<Markup>,
    session: String,
    state: State,
}

impl FromRequestParts<State> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Ctx, Response> {
        // Where the language switch comes back to: this page, unless it answered a form (a GET
        // of a POST-only URL would not be a page).
        let here = match parts.method {
            Method::GET => parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            _ => parts.uri.path().to_owned(),
        };
        let sign_in = || to_sign_in(&parts.headers, &format!("/sign-in?next={}", url_escape(&here)));
        let Some(id) = session_id(&parts.headers) else { return Err(sign_in()) };
        let Some((hash, csrf)) = state.console.touch(&id) else { return Err(sign_in()) };
        let (lang, era) = prefs_of(&parts.headers);
        let caller = match resolve(state, hash).await {
            Ok(Some(caller)) => caller,
            Ok(None) => {
                state.console.close(&id);
                return Err(sign_in());
            }
            Err(e) => return Err(error_page(None, lang, e)),
        };
        // A page shown in full takes the flash; htmx's partial updates leave it alone.
        let flash = (parts.method == Method::GET && !parts.headers.contains_key("hx-request"))
            .then(|| state.console.take_flash(&id, parts.uri.path()))
            .flatten();
        Ok(Ctx { caller, csrf, lang, era, org: None, here, flash, session: id, state: state.clone() })
    }
}

/// The way to the sign-in page. htmx follows a redirect silently and would swap the sign-in page
/// into the part of the page it updates (a search's results); `HX-Redirect` instead makes htmx
/// load the sign-in page as a whole page.
fn to_sign_in(headers: &HeaderMap, target: &str) -> Response {
    if !headers.contains_key("hx-request") {
        return Redirect::to(target).into_response();
    }
    let mut r = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(target) {
        r.headers_mut().insert("hx-redirect", v);
    }
    r
}

impl Ctx {
    pub fn t(&self, label: L) -> &'static str {
        label.text(self.lang)
    }

    pub fn datetime(&self, ms: i64) -> String {
        i18n::datetime(ms, self.lang, self.era)
    }

    pub fn date(&self, ms: i64) -> String {
        i18n::date(ms, self.lang, self.era)
    }

    /// Show `notice` once, on the next page of this session if it is `path` (where the form
    /// redirects to after it succeeded).
    pub fn flash(&self, path: &str, notice: Markup) {
        self.state.console.set_flash(&self.session, Flash { path: path.to_owned(), notice });
    }

    /// The hidden field every form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="_csrf" value=(self.csrf); }
    }

    /// Run blocking work (store, plugins) with the pipeline; an error becomes the error page.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Pipeline) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, PageError> {
        crate::api::blocking(&self.state, f).await.map_err(|e| self.fail(e))
    }

    /// An error as this request's error page.
    pub fn fail(&self, e: impl Into<ApiError>) -> PageError {
        PageError { ctx: Some(Box::new(self.clone())), lang: self.lang, error: e.into() }
    }

    /// The organization the navigation links into: the page's, or the key's own.
    fn nav_org(&self) -> Option<&str> {
        self.org.as_deref().or(match &self.caller {
            Caller::Key { org, .. } => Some(org.as_str()),
            Caller::Admin => None,
        })
    }

    /// The page: `body` inside the layout, with `active` marked in the navigation.
    pub fn render(&self, active: Nav, title: &str, body: Markup) -> Markup {
        let nav = self.nav_org().map(|org| {
            html! {
                nav aria-label="Main" {
                    ul.nav {
                        @for item in Nav::ALL {
                            li {
                                a href=(item.href(org)) aria-current=[(*item == active).then_some("page")] {
                                    (self.t(item.label()))
                                }
                            }
                        }
                    }
                }
            }
        });
        let who = match &self.caller {
            Caller::Admin => "admin".to_owned(),
            Caller::Key { name, role, .. } => format!("{name} ({})", role.name()),
        };
        document(
            self.lang,
            title,
            Some(&self.csrf),
            html! {
                header.top {
                    a.brand href="/" { (self.t(L::AppName)) }
                    @if let Some(nav) = nav { (nav) }
                    div.tools {
                        (lang_switch(self.lang, self.era, &self.here))
                        span.who { (self.t(L::SignedInAs)) " " (who) }
                        form method="post" action="/sign-out" {
                            (self.csrf_field())
                            button type="submit" { (self.t(L::SignOut)) }
                        }
                    }
                }
                main id="main" { h1 { (title) } @if let Some(f) = &self.flash { (f) } (body) }
            },
        )
    }
}

/// A page of one organization: [`Ctx`] with the organization of the URL (`{org}`) checked
/// against the caller. Another organization's key, or one that does not exist, gets the 404
/// page — the same answer, so a URL tells nothing about another organization.
#[derive(Clone)]
pub struct OrgPage {
    pub ctx: Ctx,
    pub org: String,
    /// Who writes, for the pipeline and the audit log.
    pub actor: Actor,
}

impl std::ops::Deref for OrgPage {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl FromRequestParts<State> for OrgPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<OrgPage, Response> {
        let mut ctx = Ctx::from_request_parts(parts, state).await?;
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ctx.fail(ApiError::not_found("no organization in the path")).into_response())?;
        let org = params.get("org").cloned().unwrap_or_default();
        let actor = ctx.caller.require(&org, Role::ReadOnly).map_err(|e| ctx.fail(e).into_response())?;
        // The admin passes `require` for any name: make sure the organization exists.
        let slug = org.clone();
        ctx.blocking(move |p| Ok(p.store().org(&slug).map(|_| ())?)).await.map_err(IntoResponse::into_response)?;
        ctx.org = Some(org.clone());
        Ok(OrgPage { ctx, org, actor })
    }
}

impl OrgPage {
    /// At least `role` in this organization, or the 403 page.
    pub fn require(&self, role: Role) -> Result<Actor, PageError> {
        self.caller.require(&self.org, role).map_err(|e| self.fail(e))
    }

    /// Whether the caller has at least `role` (to show or hide a button; the handler still
    /// checks).
    pub fn can(&self, role: Role) -> bool {
        self.caller.require(&self.org, role).is_ok()
    }

    /// A path inside this organization: `page.href("/customers")`.
    pub fn href(&self, rest: &str) -> String {
        format!("/orgs/{}{rest}", url_escape(&self.org))
    }
}

/// The navigation's entries, every page group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Customers,
    Distributors,
    Import,
    Plugins,
    Reports,
    Audit,
    /// Pages outside the navigation (sign-in, errors).
    None,
}

impl Nav {
    const ALL: &'static [Nav] =
        &[Nav::Dashboard, Nav::Customers, Nav::Distributors, Nav::Import, Nav::Plugins, Nav::Reports, Nav::Audit];

    fn label(self) -> L {
        match self {
            Nav::Dashboard | Nav::None => L::Dashboard,
            Nav::Customers => L::Customers,
            Nav::Distributors => L::Distributors,
            Nav::Import => L::Import,
            Nav::Plugins => L::Plugins,
            Nav::Reports => L::Reports,
            Nav::Audit => L::Audit,
        }
    }

    fn href(self, org: &str) -> String {
        let base = format!("/orgs/{}", url_escape(org));
        match self {
            Nav::Dashboard | Nav::None => base,
            Nav::Customers => format!("{base}/customers"),
            Nav::Distributors => format!("{base}/distributors"),
            Nav::Import => format!("{base}/import"),
            Nav::Plugins => format!("{base}/plugins"),
            Nav::Reports => format!("{base}/reports"),
            Nav::Audit => format!("{base}/audit"),
        }
    }
}

/// The HTML document around a page: assets, and htmx told to send the CSRF token with each of
/// its requests and to swap error answers too (a 422 re-renders the form with the reason).
fn document(lang: Lang, title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    let hx_headers = csrf.map(|c| serde_json::json!({ "x-csrf-token": c }).to_string());
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}"#;
                title { (title) " · Rapport" }
                link rel="stylesheet" href=(ASSETS.css_url);
                script src=(ASSETS.htmx_url) defer {}
            }
            body hx-headers=[hx_headers] {
                a.skip href="#main" { (L::SkipToContent.text(lang)) }
                (body)
            }
        }
    }
}

fn lang_switch(lang: Lang, era: Era, here: &str) -> Markup {
    let back = url_escape(here);
    html! {
        nav.lang aria-label=(L::Language.text(lang)) {
            a href={ "/prefs?lang=en&back=" (back) } lang="en" aria-current=[(lang == Lang::En).then_some("true")] { "EN" }
            " · "
            a href={ "/prefs?lang=th&back=" (back) } lang="th" aria-current=[(lang == Lang::Th).then_some("true")] { "ไทย" }
            @if lang == Lang::Th {
                " · "
                @if era == Era::Buddhist {
                    a href={ "/prefs?era=ce&back=" (back) } { (L::CommonEra.text(lang)) }
                } @else {
                    a href={ "/prefs?era=be&back=" (back) } { (L::BuddhistEra.text(lang)) }
                }
            }
        }
    }
}

// ----- errors -----

/// An error answered as a page: the 404 page for anything not found (or not visible), the 403
/// page, or the message of a request that could not be done.
pub struct PageError {
    ctx: Option<Box<Ctx>>,
    lang: Lang,
    pub error: ApiError,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.ctx.as_deref(), self.lang, self.error)
    }
}

fn error_page(ctx: Option<&Ctx>, lang: Lang, e: ApiError) -> Response {
    let status = e.status;
    let (title, text) = match status {
        StatusCode::NOT_FOUND => (L::NotFound.text(lang), L::NotFoundText.text(lang).to_owned()),
        StatusCode::FORBIDDEN => (L::Forbidden.text(lang), e.detail),
        s if s.is_server_error() => {
            tracing::error!("console: {}", e.detail);
            (L::Error.text(lang), e.detail)
        }
        _ => (L::BadRequest.text(lang), e.detail),
    };
    let body = html! { p.error role="alert" { (text) } p { a href="/" { (L::Dashboard.text(lang)) } } };
    let markup = match ctx {
        Some(ctx) => ctx.render(Nav::None, title, body),
        None => document(lang, title, None, html! { main id="main" { h1 { (title) } (body) } }),
    };
    (status, markup).into_response()
}

/// The 404 page, for every path the API and the console do not serve (the server's fallback).
pub async fn not_found(state: &State, headers: &HeaderMap) -> Response {
    let (lang, era) = prefs_of(headers);
    let e = ApiError::not_found("no such page");
    let Some((session, (hash, csrf))) =
        session_id(headers).and_then(|id| state.console.touch(&id).map(|found| (id, found)))
    else {
        return error_page(None, lang, e);
    };
    match resolve(state, hash).await {
        Ok(Some(caller)) => {
            let ctx = Ctx {
                caller,
                csrf,
                lang,
                era,
                org: None,
                here: "/".into(),
                flash: None,
                session,
                state: state.clone(),
            };
            error_page(Some(&ctx), lang, e)
        }
        _ => error_page(None, lang, e),
    }
}

/// Checks the CSRF token of every POST (and any other unsafe method) before a handler runs:
/// from the `x-csrf-token` header (htmx), the `_csrf` query parameter (multipart forms), or
/// the `_csrf` field of a urlencoded form. Sign-in is the one form without a session yet.
async fn csrf_guard(Extract(state): Extract<State>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || req.uri().path() == "/sign-in" {
        return next.run(req).await;
    }
    let (lang, _) = prefs_of(req.headers());
    let limit = state.limits.body;
    let Some((_, expected)) = session_id(req.headers()).and_then(|id| state.console.touch(&id)) else {
        let answer = to_sign_in(req.headers(), "/sign-in");
        return refuse(req, limit, answer).await;
    };
    let forbidden = || error_page(None, lang, ApiError::forbidden(L::CsrfFailed.text(lang)));
    let same = |given: &str| bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    let outside_body = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(req.uri().query().unwrap_or(""), "_csrf"));
    if let Some(given) = outside_body {
        return if same(&given) { next.run(req).await } else { refuse(req, limit, forbidden()).await };
    }
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    if !is_form {
        return refuse(req, limit, forbidden()).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the form is larger than the server accepts").into_response();
    };
    let given = form_urlencoded(&bytes).into_iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v);
    match given {
        Some(given) if same(&given) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        _ => forbidden(),
    }
}

/// Answer a refused request after reading its body (up to `limit`): a body left unread makes the
/// server close the connection, and a client that reuses it for its next request fails.
async fn refuse(req: Request, limit: usize, answer: Response) -> Response {
    let _ = axum::body::to_bytes(req.into_body(), limit).await;
    answer
}

fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded(query.as_bytes()).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Percent-encodes a value for a URL's path segment or query.
pub fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ----- sign-in, sign-out, preferences, home -----

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site: sign-in's `next` and the language switch's `back` must not send
/// the user to another site. Browsers drop tabs and line breaks inside a URL and read `\` as
/// `/`, so `/<TAB>/evil.example` would be `//evil.example`, another host: anything but printable
/// ASCII (no control character, no space) is refused, which also keeps the `Location` header
/// valid.
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

async fn sign_in_form(headers: HeaderMap, Query(q): Query<NextQuery>) -> Response {
    let (lang, _) = prefs_of(&headers);
    sign_in_page(lang, q.next.as_deref(), None, StatusCode::OK)
}

fn sign_in_page(lang: Lang, next: Option<&str>, error: Option<L>, status: StatusCode) -> Response {
    let title = L::SignIn.text(lang);
    let body = html! {
        main id="main" .narrow {
            h1 { (title) }
            form method="post" action="/sign-in" {
                input type="hidden" name="next" value=(local_path(next));
                label for="token" { (L::Token.text(lang)) }
                input id="token" name="token" type="password" autocomplete="current-password" required
                    aria-describedby=(if error.is_some() { "token-error" } else { "token-help" })
                    aria-invalid=[error.map(|_| "true")];
                @if let Some(e) = error {
                    p.error id="token-error" role="alert" { (e.text(lang)) }
                }
                p.help id="token-help" { (L::TokenHelp.text(lang)) }
                button type="submit" { (title) }
            }
            (lang_switch(lang, Era::Common, "/sign-in"))
        }
    };
    (status, document(lang, title, None, body)).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn sign_in(Extract(state): Extract<State>, headers: HeaderMap, form: axum::Form<SignIn>) -> Response {
    let (lang, _) = prefs_of(&headers);
    let token = form.token.trim();
    let next = form.next.as_deref();
    if token.is_empty() {
        return sign_in_page(lang, next, Some(L::EmptyToken), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let hash = hash_token(token);
    match resolve(&state, hash.clone()).await {
        Ok(Some(_)) => {}
        Ok(None) => return sign_in_page(lang, next, Some(L::BadToken), StatusCode::UNAUTHORIZED),
        Err(e) => return error_page(None, lang, e),
    }
    let (id, _) = state.console.open(hash);
    let cookie = Cookie::build((SESSION_COOKIE, id))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(over_tls(&headers))
        .build();
    let mut response = Redirect::to(local_path(next)).into_response();
    set_cookie(&mut response, &cookie);
    response
}

fn set_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

async fn sign_out(Extract(state): Extract<State>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.console.close(&id);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    let cookie = Cookie::build((SESSION_COOKIE, ""))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(time::Duration::ZERO)
        .build();
    set_cookie(&mut response, &cookie);
    response
}

#[derive(Deserialize)]
struct Prefs {
    lang: Option<String>,
    era: Option<String>,
    back: Option<String>,
}

/// The language and calendar switch: a cookie each (a preference, not a change on the server,
/// so a plain link).
async fn prefs(Query(q): Query<Prefs>) -> Response {
    let mut response = Redirect::to(local_path(q.back.as_deref())).into_response();
    let year = time::Duration::days(365);
    if let Some(lang) = q.lang.as_deref().and_then(Lang::parse) {
        let c = Cookie::build((LANG_COOKIE, lang.code())).path("/").same_site(SameSite::Lax).max_age(year).build();
        set_cookie(&mut response, &c);
    }
    if let Some(era) = q.era.as_deref().filter(|e| matches!(*e, "be" | "ce")) {
        let c = Cookie::build((ERA_COOKIE, era.to_owned())).path("/").same_site(SameSite::Lax).max_age(year).build();
        set_cookie(&mut response, &c);
    }
    response
}

/// `/`: a key's own organization; the admin chooses one.
async fn home(ctx: Ctx) -> Result<Response, PageError> {
    if let Caller::Key { org, .. } = &ctx.caller {
        return Ok(Redirect::to(&format!("/orgs/{}", url_escape(org))).into_response());
    }
    let orgs = ctx.blocking(|p| Ok(p.store().orgs()?)).await?;
    let title = ctx.t(L::Organizations);
    Ok(ctx
        .render(
            Nav::None,
            title,
            html! {
                p { (ctx.t(L::ChooseOrg)) }
                ul.orgs {
                    @for o in &orgs {
                        li { a href={ "/orgs/" (url_escape(&o.slug)) } { (o.name) } " " span.muted { "(" (o.slug) ")" } }
                    }
                }
            },
        )
        .into_response())
}

// ----- assets -----

/// The embedded assets, named with their version or content hash so that they can be cached
/// for a year: a new build changes the URL.
struct Assets {
    htmx_url: String,
    css_url: String,
}

const HTMX: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/node_modules/htmx.org/dist/htmx.min.js"));
const HTMX_PACKAGE: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/node_modules/htmx.org/package.json"));
const CSS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../console/console.css"));

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let version = serde_json::from_str::<serde_json::Value>(HTMX_PACKAGE)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "0".into());
    let css_hash = &hash_token(&String::from_utf8_lossy(CSS))[..12];
    Assets { htmx_url: format!("/assets/htmx-{version}.min.js"), css_url: format!("/assets/console-{css_hash}.css") }
});

async fn asset(Path(file): Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let (body, kind): (&'static [u8], &str) = if path == ASSETS.htmx_url {
        (HTMX, "text/javascript; charset=utf-8")
    } else if path == ASSETS.css_url {
        (CSS, "text/css; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
}

/// Marks text as HTML already escaped (an inline SVG chart built from numbers).
pub fn raw(html: String) -> PreEscaped<String> {
    PreEscaped(html)
}
