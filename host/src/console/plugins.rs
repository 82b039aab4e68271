//! The plugins page: install a component (upload a `.wasm`), enable or disable it, set the order
//! policies run in and what a failing policy does, edit its configuration as JSON against the
//! schema the component ships, switch versions (roll back), and try a version before trusting it
//! (a dry-run on history beside the shadow report of live writes), with the execution trace.
//!
//! Every action is the pipeline call the API's `plugins.rs` makes, with the same roles: anyone
//! may look, an owner changes.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State as Extract};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::Value;

use super::i18n::labels;
use super::{L, Nav, OrgPage, PageError, url_escape};
use crate::api::{ApiError, Role, State};
use crate::pipeline::{DryRun, InstalledVersion as Installed, PipelineError, ShadowReport};
use crate::store::{FailureMode, PluginRow, TraceRecord};

labels! {
    enum T {
        Intro: "Plugins are the organization's rules: policies judge every write (in this order), scorers compute scores, reporters make reports.",
            "ปลั๊กอินคือกฎขององค์กร: นโยบายตรวจทุกการเขียนข้อมูล (ตามลำดับนี้) ตัวให้คะแนนคำนวณคะแนน และตัวรายงานสร้างรายงาน";
        None: "No plugin is installed yet.", "ยังไม่มีปลั๊กอินที่ติดตั้ง";
        Name: "Name", "ชื่อ";
        World: "Kind", "ประเภท";
        Status: "Status", "สถานะ";
        Enabled: "enabled", "เปิดใช้งาน";
        Disabled: "disabled", "ปิดใช้งาน";
        Order: "Order", "ลำดับ";
        Version: "Version", "เวอร์ชัน";
        Active: "active", "ใช้งานอยู่";
        Shadow: "shadow", "เงา";
        Enable: "Enable", "เปิดใช้งาน";
        Disable: "Disable", "ปิดใช้งาน";
        Up: "Move up", "เลื่อนขึ้น";
        Down: "Move down", "เลื่อนลง";
        Open: "Settings", "ตั้งค่า";
        DisabledBecause: "Disabled by the host:", "ระบบปิดใช้งานเพราะ:";
        Install: "Install a plugin", "ติดตั้งปลั๊กอิน";
        Component: "Component (.wasm)", "คอมโพเนนต์ (.wasm)";
        ComponentHelp: "A WebAssembly component built with the Rapport SDK. Uploading it again under the same name adds a version.",
            "คอมโพเนนต์ WebAssembly ที่สร้างด้วย Rapport SDK หากอัปโหลดด้วยชื่อเดิมจะเป็นเวอร์ชันใหม่";
        NameHelp: "Lower-case letters, digits, - or _. It names the plugin in URLs and score keys.",
            "ตัวพิมพ์เล็ก ตัวเลข - หรือ _ ใช้เป็นชื่อปลั๊กอินใน URL และชื่อคะแนน";
        VersionLabel: "Version label (optional)", "ป้ายเวอร์ชัน (ไม่บังคับ)";
        Activate: "Make it the active version", "ใช้เป็นเวอร์ชันที่ทำงาน";
        InstallButton: "Install", "ติดตั้ง";
        NoComponent: "Choose the component's .wasm file.", "โปรดเลือกไฟล์ .wasm ของคอมโพเนนต์";
        TooLarge: "The file is larger than this server accepts.", "ไฟล์มีขนาดใหญ่กว่าที่เซิร์ฟเวอร์รับได้";
        NeedName: "Name the plugin.", "โปรดตั้งชื่อปลั๊กอิน";
        Saved: "Saved.", "บันทึกแล้ว";
        Installed: "Installed. It starts disabled: enable it when its configuration is right.",
            "ติดตั้งแล้ว ปลั๊กอินจะยังปิดอยู่ เปิดใช้งานเมื่อตั้งค่าถูกต้องแล้ว";
        FailureMode: "When it fails", "เมื่อทำงานผิดพลาด";
        Closed: "refuse the write (closed)", "ปฏิเสธการเขียน (ปิด)";
        OpenMode: "let the write through with a warning (open)", "ให้เขียนได้พร้อมคำเตือน (เปิด)";
        Position: "Position among the policies (1 runs first)", "ลำดับในนโยบาย (1 ทำงานก่อน)";
        Apply: "Apply", "ใช้";
        ConfigTitle: "Configuration", "การตั้งค่า";
        Config: "Configuration (JSON)", "การตั้งค่า (JSON)";
        Policy: "policy", "นโยบาย";
        Scorer: "scorer", "ตัวให้คะแนน";
        Reporter: "reporter", "ตัวรายงาน";
        ConfigHelp: "Checked against the schema the component ships before it is saved.",
            "ตรวจสอบกับสคีมาของคอมโพเนนต์ก่อนบันทึก";
        SaveConfig: "Save the configuration", "บันทึกการตั้งค่า";
        NotJson: "This is not JSON:", "นี่ไม่ใช่ JSON:";
        InvalidAt: "Invalid at", "ไม่ถูกต้องที่";
        Fields: "Fields the schema allows", "ฟิลด์ที่สคีมาอนุญาต";
        NoSchema: "The component ships no schema: any JSON object is accepted.", "คอมโพเนนต์ไม่มีสคีมา: รับ JSON object ใดก็ได้";
        Field: "Field", "ฟิลด์";
        Type: "Type", "ชนิด";
        Description: "Description", "คำอธิบาย";
        Problem: "Problem", "ปัญหา";
        Versions: "Versions", "เวอร์ชัน";
        Label: "Label", "ป้าย";
        Hash: "sha256", "sha256";
        InstalledAt: "Installed", "ติดตั้งเมื่อ";
        By: "By", "โดย";
        MakeActive: "Make active", "ใช้เวอร์ชันนี้";
        ShadowIt: "Shadow on live writes", "ทดสอบคู่ขนานกับการเขียนจริง";
        StopShadow: "Stop shadowing", "หยุดทดสอบคู่ขนาน";
        Trial: "Try a version before trusting it", "ทดลองเวอร์ชันก่อนใช้งานจริง";
        DryRun: "Dry-run on history", "ทดลองกับข้อมูลย้อนหลัง";
        DryRunHelp: "Replays the last changes (a policy) or scores a sample of customers (a scorer) with the candidate and the active version; nothing is written.",
            "เล่นซ้ำการเปลี่ยนแปลงล่าสุด (นโยบาย) หรือให้คะแนนลูกค้าตัวอย่าง (ตัวให้คะแนน) ด้วยเวอร์ชันทดลองและเวอร์ชันที่ใช้งาน โดยไม่บันทึกอะไร";
        Candidate: "Candidate version", "เวอร์ชันทดลอง";
        Sample: "Sample size", "ขนาดตัวอย่าง";
        Run: "Run the dry-run", "เริ่มทดลอง";
        OnlyOne: "Install a second version to compare it with the active one.", "ติดตั้งเวอร์ชันที่สองเพื่อเปรียบเทียบกับเวอร์ชันที่ใช้งาน";
        Compared: "Compared", "เปรียบเทียบ";
        Agreed: "Agreed", "ตรงกัน";
        Differed: "Differed", "ต่างกัน";
        Differences: "First differences", "ความต่างแรก ๆ";
        ScoreShift: "Score shifts", "การเปลี่ยนของคะแนน";
        MeanShift: "Mean change", "การเปลี่ยนเฉลี่ย";
        MaxShift: "Largest change", "การเปลี่ยนสูงสุด";
        LabelsChanged: "Labels changed", "ป้ายที่เปลี่ยน";
        ShadowReport: "Shadow on live writes", "การทดสอบคู่ขนานกับการเขียนจริง";
        NoShadow: "No version is shadowing the active one.", "ไม่มีเวอร์ชันที่ทดสอบคู่ขนาน";
        ShadowPolicyOnly: "Shadow mode compares policy decisions; try a scorer's new version with a dry-run.",
            "โหมดเงาเปรียบเทียบการตัดสินของนโยบาย สำหรับตัวให้คะแนนให้ใช้การทดลองกับข้อมูลย้อนหลัง";
        Runs: "Runs", "จำนวนครั้ง";
        Disagreements: "Disagreements", "ไม่ตรงกัน";
        Trace: "Execution trace (latest calls)", "บันทึกการทำงาน (การเรียกล่าสุด)";
        NoTrace: "No call recorded yet.", "ยังไม่มีการเรียกใช้";
        Older: "Older calls", "การเรียกก่อนหน้า";
        At: "At", "เวลา";
        Hook: "Hook", "จุดเรียก";
        Outcome: "Outcome", "ผลลัพธ์";
        Customer: "Customer", "ลูกค้า";
        Summary: "Summary", "สรุป";
        Duration: "µs", "ไมโครวินาที";
        Fuel: "Fuel", "เชื้อเพลิง";
        Logs: "Log lines", "บรรทัดบันทึก";
        BackToList: "All plugins", "ปลั๊กอินทั้งหมด";
        OwnerOnly: "Only an owner changes plugins.", "เฉพาะเจ้าของระบบที่เปลี่ยนปลั๊กอินได้";
    }
}

pub(super) fn routes() -> Router<State> {
    Router::new()
        // The upload is bounded by the server's upload limit while it streams (see `install`).
        .route("/orgs/{org}/plugins", get(list).post(install).layer(DefaultBodyLimit::disable()))
        .route("/orgs/{org}/plugins/{name}", get(detail))
        .route("/orgs/{org}/plugins/{name}/enable", post(enable))
        .route("/orgs/{org}/plugins/{name}/disable", post(disable))
        .route("/orgs/{org}/plugins/{name}/order", post(order))
        .route("/orgs/{org}/plugins/{name}/failure-mode", post(failure_mode))
        .route("/orgs/{org}/plugins/{name}/rollback", post(rollback))
        .route("/orgs/{org}/plugins/{name}/shadow", post(shadow))
        .route("/orgs/{org}/plugins/{name}/config", post(configure))
        .route("/orgs/{org}/plugins/{name}/dry-run", post(dry_run))
}

type Form = axum::Form<HashMap<String, String>>;

/// Trace rows shown at a time (the page links to older ones).
const TRACE_PAGE: u32 = 25;

// ----- the list and installing -----

/// What the install form shows again after a refused upload.
struct InstallForm {
    name: String,
    version: String,
    activate: bool,
    /// (field id, message) of the refusal.
    error: Option<(&'static str, String)>,
}

impl Default for InstallForm {
    fn default() -> Self {
        InstallForm { name: String::new(), version: String::new(), activate: true, error: None }
    }
}

async fn list(page: OrgPage) -> Result<Markup, PageError> {
    let org = page.org.clone();
    let rows = page.blocking(move |p| Ok(p.plugins(&org)?)).await?;
    Ok(list_page(&page, &rows, &InstallForm::default()))
}

fn list_page(page: &OrgPage, rows: &[PluginRow], form: &InstallForm) -> Markup {
    let t = |l: T| l.text(page.lang);
    let owner = page.can(Role::Owner);
    let count = |world: &str| rows.iter().filter(|r| r.world == world).count() as i64;
    page.render(
        Nav::Plugins,
        page.t(L::Plugins),
        html! {
            p.help { (t(T::Intro)) }
            @if rows.is_empty() {
                p.muted { (t(T::None)) }
            } @else {
                div.table-wrap {
                    table id="plugins" {
                        thead { tr {
                            th { (t(T::Name)) } th { (t(T::World)) } th.num { (t(T::Order)) } th { (t(T::Status)) }
                            th.num { (t(T::Version)) } th { (t(T::Open)) }
                        } }
                        tbody {
                            @for r in rows {
                                tr data-plugin=(r.name) {
                                    td { a href=(page.href(&format!("/plugins/{}", url_escape(&r.name)))) { (r.name) } }
                                    td { (world(page, &r.world)) }
                                    td.num { (r.position) }
                                    td {
                                        (if r.enabled { t(T::Enabled) } else { t(T::Disabled) })
                                        @if let Some(why) = &r.disabled_reason { br; span.error { (t(T::DisabledBecause)) " " (why) } }
                                    }
                                    td.num {
                                        (r.active_version)
                                        @if let Some(s) = r.shadow_version { " (" (t(T::Shadow)) " " (s) ")" }
                                    }
                                    td {
                                        @if owner {
                                            div.tools {
                                                (action(page, &r.name, if r.enabled { "disable" } else { "enable" }, &[],
                                                    if r.enabled { t(T::Disable) } else { t(T::Enable) }, true))
                                                @if r.position > 1 {
                                                    (action(page, &r.name, "order", &[("position", (r.position - 1).to_string())], t(T::Up), true))
                                                }
                                                @if r.position < count(&r.world) {
                                                    (action(page, &r.name, "order", &[("position", (r.position + 1).to_string())], t(T::Down), true))
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if owner { (install_form(page, form)) } @else { p.muted { (t(T::OwnerOnly)) } }
        },
    )
}

/// A world's name for a person (the stored name when a newer contract adds one).
fn world<'a>(page: &OrgPage, name: &'a str) -> &'a str {
    match name {
        "policy" => T::Policy.text(page.lang),
        "scorer" => T::Scorer.text(page.lang),
        "reporter" => T::Reporter.text(page.lang),
        other => other,
    }
}

/// A one-button form posting to `/plugins/{name}/{what}`.
fn action(
    page: &OrgPage,
    name: &str,
    what: &str,
    fields: &[(&str, String)],
    label: &str,
    back_to_list: bool,
) -> Markup {
    let url = page.href(&format!("/plugins/{}/{what}", url_escape(name)));
    html! {
        form method="post" action=(url) {
            (page.csrf_field())
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            @if back_to_list { input type="hidden" name="back" value="list"; }
            button.secondary type="submit" aria-label={ (label) " " (name) } { (label) }
        }
    }
}

fn install_form(page: &OrgPage, form: &InstallForm) -> Markup {
    let t = |l: T| l.text(page.lang);
    let action = format!("{}?_csrf={}", page.href("/plugins"), url_escape(&page.csrf));
    let error_for = |id: &str| form.error.as_ref().filter(|(f, _)| *f == id).map(|(_, m)| m.clone());
    let field_error = |id: &str| {
        html! { @if let Some(m) = error_for(id) { p.error id={ (id) "-error" } role="alert" { (m) } } }
    };
    let described = |id: &str| if error_for(id).is_some() { format!("{id}-error") } else { format!("{id}-help") };
    html! {
        h2 { (t(T::Install)) }
        form method="post" action=(action) enctype="multipart/form-data" id="install" {
            label for="plugin-component" { (t(T::Component)) }
            input id="plugin-component" name="component" type="file" accept=".wasm,application/wasm" required
                aria-describedby=(described("plugin-component")) aria-invalid=[error_for("plugin-component").map(|_| "true")];
            (field_error("plugin-component"))
            p.help id="plugin-component-help" { (t(T::ComponentHelp)) }
            div.row {
                div {
                    label for="plugin-name" { (t(T::Name)) }
                    input id="plugin-name" name="name" type="text" required pattern="[a-z0-9][a-z0-9_\\-]{0,63}" value=(form.name)
                        aria-describedby=(described("plugin-name")) aria-invalid=[error_for("plugin-name").map(|_| "true")];
                }
                div {
                    label for="plugin-version" { (t(T::VersionLabel)) }
                    input id="plugin-version" name="version" type="text" value=(form.version);
                }
            }
            (field_error("plugin-name"))
            p.help id="plugin-name-help" { (t(T::NameHelp)) }
            label {
                input id="plugin-activate" name="activate" type="checkbox" value="true" checked[form.activate];
                " " (t(T::Activate))
            }
            button type="submit" { (t(T::InstallButton)) }
        }
    }
}

/// Install from the multipart form: `component` (the file), `name`, `version`, `activate`.
async fn install(page: OrgPage, Extract(state): Extract<State>, mut form: Multipart) -> Result<Response, PageError> {
    let actor = page.require(Role::Owner)?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        page.fail(ApiError::bad_request(format!("the upload was cut off or malformed: {e}")))
    };
    // An unchecked box is not sent: `activate` is true only when the field comes.
    let mut shown = InstallForm { activate: false, ..InstallForm::default() };
    let mut bytes = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "component" => {
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > state.limits.upload {
                        shown.error = Some(("plugin-component", text(&page, T::TooLarge)));
                        return refused(&page, shown, StatusCode::PAYLOAD_TOO_LARGE).await;
                    }
                    bytes.extend_from_slice(&chunk);
                }
            }
            "name" => shown.name = field.text().await.map_err(bad)?.trim().to_owned(),
            "version" => shown.version = field.text().await.map_err(bad)?.trim().to_owned(),
            "activate" => shown.activate = field.text().await.map_err(bad)? == "true",
            _ => {}
        }
    }
    if bytes.is_empty() {
        shown.error = Some(("plugin-component", text(&page, T::NoComponent)));
        return refused(&page, shown, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    if shown.name.is_empty() {
        shown.error = Some(("plugin-name", text(&page, T::NeedName)));
        return refused(&page, shown, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let (org, name) = (page.org.clone(), shown.name.clone());
    let version = Some(shown.version.clone()).filter(|v| !v.is_empty());
    let activate = shown.activate;
    let result =
        page.blocking(move |p| Ok(p.install(&org, &actor, &name, &bytes, version.as_deref(), None, activate))).await?;
    match result {
        Ok(row) => {
            Ok(Redirect::to(&format!("{}?done=installed", page.href(&format!("/plugins/{}", url_escape(&row.name)))))
                .into_response())
        }
        Err(e) => {
            // A bad name is the name's fault; anything else (not a component, wrong world or
            // contract, a configuration the new schema refuses) is the component's.
            let field = if matches!(e, PipelineError::Invalid(_)) { "plugin-name" } else { "plugin-component" };
            let status = status_of(&e);
            shown.error = Some((field, e.to_string()));
            refused(&page, shown, status).await
        }
    }
}

/// The status the API answers a pipeline error with (`ApiError`'s mapping), for the page.
fn status_of(e: &PipelineError) -> StatusCode {
    match e {
        PipelineError::NotFound(_) => StatusCode::NOT_FOUND,
        PipelineError::Invalid(_) => StatusCode::BAD_REQUEST,
        PipelineError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn text(page: &OrgPage, l: T) -> String {
    l.text(page.lang).to_owned()
}

async fn refused(page: &OrgPage, shown: InstallForm, status: StatusCode) -> Result<Response, PageError> {
    let org = page.org.clone();
    let rows = page.blocking(move |p| Ok(p.plugins(&org)?)).await?;
    Ok((status, list_page(page, &rows, &shown)).into_response())
}

// ----- one plugin -----

/// What the detail page shows besides the plugin itself: a notice, an error, the configuration
/// being edited, a dry-run's result.
#[derive(Default)]
struct Extras {
    notice: Option<T>,
    error: Option<String>,
    config_text: Option<String>,
    /// (JSON Pointer, message) from the schema, or ("", message) for JSON that does not parse.
    config_error: Option<(String, String)>,
    json_error: Option<String>,
    dry_run: Option<DryRun>,
    candidate: Option<u32>,
}

/// Everything the detail page reads, in one blocking call.
struct Loaded {
    row: PluginRow,
    versions: Vec<Installed>,
    schema: Option<Value>,
    traces: Vec<TraceRecord>,
    shadow: Option<ShadowReport>,
}

async fn load(page: &OrgPage, name: String, before: Option<i64>) -> Result<Loaded, PageError> {
    let org = page.org.clone();
    let owner = page.can(Role::Owner);
    page.blocking(move |p| {
        let row = p.plugin(&org, &name)?;
        let versions = p.versions(&org, &name)?;
        let store = p.org(&org)?;
        let schema = match store.plugin_version(&name, row.active_version)? {
            Some(v) => store.component_schema(&v.hash)?.and_then(|s| serde_json::from_str(&s).ok()),
            None => None,
        };
        // The trace and the shadow report are an owner's, as over the API.
        let traces = if owner { p.traces(&org, &name, before, TRACE_PAGE)? } else { Vec::new() };
        let shadow = if owner && row.world == "policy" { Some(p.shadow_report(&org, &name)?) } else { None };
        Ok(Loaded { row, versions, schema, traces, shadow })
    })
    .await
}

async fn detail(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Markup, PageError> {
    let before = q.get("before").and_then(|b| b.parse().ok());
    let loaded = load(&page, name, before).await?;
    let notice = q.get("done").map(|d| if d == "installed" { T::Installed } else { T::Saved });
    Ok(detail_page(&page, &loaded, Extras { notice, ..Extras::default() }))
}

/// The plugin's page, in the layout.
fn detail_page(page: &OrgPage, d: &Loaded, x: Extras) -> Markup {
    let title = format!("{} · {}", page.t(L::Plugins), d.row.name);
    page.render(Nav::Plugins, &title, detail_body(page, d, x))
}

fn detail_body(page: &OrgPage, d: &Loaded, x: Extras) -> Markup {
    let t = |l: T| l.text(page.lang);
    let r = &d.row;
    let owner = page.can(Role::Owner);
    let config_text =
        x.config_text.clone().unwrap_or_else(|| serde_json::to_string_pretty(&r.config).unwrap_or_default());
    let bad_field = x.config_error.as_ref().map(|(path, _)| top_field(path));
    html! {
        p { a href=(page.href("/plugins")) { "← " (t(T::BackToList)) } }
        @if let Some(n) = x.notice { p.notice role="status" { (t(n)) } }
        @if let Some(e) = &x.error { p.error role="alert" { (e) } }
        dl.facts {
            dt { (t(T::World)) } dd { (world(page, &r.world)) }
            dt { (t(T::Status)) } dd id="plugin-status" { (if r.enabled { t(T::Enabled) } else { t(T::Disabled) }) }
            @if let Some(why) = &r.disabled_reason { dt { (t(T::DisabledBecause)) } dd.error { (why) } }
            dt { (t(T::Version)) } dd { (r.active_version) }
            @if r.world == "policy" {
                dt { (t(T::Order)) } dd { (r.position) }
                dt { (t(T::FailureMode)) } dd { (match r.failure_mode { FailureMode::Closed => t(T::Closed), FailureMode::Open => t(T::OpenMode) }) }
            }
        }
        @if owner {
            div.row {
                (action(page, &r.name, if r.enabled { "disable" } else { "enable" }, &[], if r.enabled { t(T::Disable) } else { t(T::Enable) }, false))
            }
            @if r.world == "policy" {
                div.grid2 {
                    form method="post" action=(page.href(&format!("/plugins/{}/order", url_escape(&r.name)))) {
                        (page.csrf_field())
                        label for="plugin-position" { (t(T::Position)) }
                        div.row {
                            input id="plugin-position" name="position" type="number" min="1" value=(r.position);
                            button.secondary type="submit" { (t(T::Apply)) }
                        }
                    }
                    form method="post" action=(page.href(&format!("/plugins/{}/failure-mode", url_escape(&r.name)))) {
                        (page.csrf_field())
                        label for="plugin-failure-mode" { (t(T::FailureMode)) }
                        div.row {
                            select id="plugin-failure-mode" name="mode" {
                                option value="closed" selected[r.failure_mode == FailureMode::Closed] { (t(T::Closed)) }
                                option value="open" selected[r.failure_mode == FailureMode::Open] { (t(T::OpenMode)) }
                            }
                            button.secondary type="submit" { (t(T::Apply)) }
                        }
                    }
                }
            }
        }
        h2 { (t(T::ConfigTitle)) }
        div.grid2 {
            form method="post" action=(page.href(&format!("/plugins/{}/config", url_escape(&r.name)))) {
                (page.csrf_field())
                label for="plugin-config" { (t(T::Config)) }
                @let invalid = x.config_error.is_some() || x.json_error.is_some();
                textarea id="plugin-config" name="config" rows="12" spellcheck="false" readonly[!owner]
                    aria-invalid=[invalid.then_some("true")]
                    aria-describedby=(if invalid { "plugin-config-error" } else { "plugin-config-help" }) { (config_text) }
                @if let Some(e) = &x.json_error {
                    p.error id="plugin-config-error" role="alert" { (t(T::NotJson)) " " (e) }
                }
                @if let Some((path, message)) = &x.config_error {
                    p.error id="plugin-config-error" role="alert" {
                        @if path.is_empty() { (message) } @else { (t(T::InvalidAt)) " " code { (path) } ": " (message) }
                    }
                }
                p.help id="plugin-config-help" { (t(T::ConfigHelp)) }
                @if owner { button type="submit" { (t(T::SaveConfig)) } }
            }
            (schema_table(page, d.schema.as_ref(), bad_field.as_deref(), x.config_error.as_ref().map(|e| e.1.as_str())))
        }
        h2 { (t(T::Versions)) }
        (versions_table(page, d, owner))
        @if owner {
            h2 { (t(T::Trial)) }
            div.grid2 id="trial" {
                section aria-labelledby="dry-run-title" {
                    h3 id="dry-run-title" { (t(T::DryRun)) }
                    (dry_run_form(page, d, x.candidate))
                    @if let Some(run) = &x.dry_run { (dry_run_view(page, run)) }
                }
                section aria-labelledby="shadow-title" {
                    h3 id="shadow-title" { (t(T::ShadowReport)) }
                    (shadow_view(page, d))
                }
            }
            h2 id="trace" { (t(T::Trace)) }
            (trace_table(page, &d.traces))
            @if let Some(last) = d.traces.last().filter(|_| d.traces.len() == TRACE_PAGE as usize) {
                p { a href={ (page.href(&format!("/plugins/{}", url_escape(&r.name)))) "?before=" (last.id) "#trace" } { (t(T::Older)) } }
            }
        }
    }
}

/// The top-level field a JSON Pointer names (`/welcome_tag/0` → `welcome_tag`), unescaped.
fn top_field(pointer: &str) -> String {
    pointer.trim_start_matches('/').split('/').next().unwrap_or("").replace("~1", "/").replace("~0", "~")
}

/// The schema's top-level fields, with the error in the row of the field it concerns.
fn schema_table(page: &OrgPage, schema: Option<&Value>, bad: Option<&str>, message: Option<&str>) -> Markup {
    let t = |l: T| l.text(page.lang);
    let properties = schema.and_then(|s| s.get("properties")).and_then(Value::as_object);
    let type_of = |v: &Value| match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => String::new(),
    };
    html! {
        section aria-labelledby="fields-title" {
            h3 id="fields-title" { (t(T::Fields)) }
            @match properties {
                None => { p.muted { (t(T::NoSchema)) } }
                Some(props) => {
                    div.table-wrap {
                        table id="config-fields" {
                            thead { tr { th { (t(T::Field)) } th { (t(T::Type)) } th { (t(T::Description)) } } }
                            tbody {
                                @for (field, spec) in props {
                                    @let wrong = bad == Some(field.as_str());
                                    tr id={ "field-" (field) } aria-invalid=[wrong.then_some("true")] {
                                        td { code { (field) } }
                                        td { (type_of(spec)) }
                                        td {
                                            (spec.get("description").and_then(Value::as_str).unwrap_or(""))
                                            @if wrong { p.error role="alert" { (t(T::Problem)) ": " (message.unwrap_or("")) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn versions_table(page: &OrgPage, d: &Loaded, owner: bool) -> Markup {
    let t = |l: T| l.text(page.lang);
    let r = &d.row;
    html! {
        div.table-wrap {
            table id="versions" {
                thead { tr {
                    th.num { (t(T::Version)) } th { (t(T::Label)) } th { (t(T::Hash)) } th { (t(T::InstalledAt)) }
                    th { (t(T::By)) } th { (t(T::Status)) } th { (t(T::Open)) }
                } }
                tbody {
                    @for v in d.versions.iter().rev() {
                        tr data-version=(v.version.version) {
                            td.num { (v.version.version) }
                            td { (v.version.author_version.as_deref().unwrap_or("")) }
                            td { code title=(v.version.hash) { (&v.version.hash[..12.min(v.version.hash.len())]) } }
                            td { (page.datetime(v.version.installed_at)) }
                            td { (v.version.installed_by) }
                            td { @if v.active { (t(T::Active)) } @if v.shadow { (t(T::Shadow)) } }
                            td {
                                @if owner && !v.active {
                                    div.tools {
                                        (action(page, &r.name, "rollback", &[("version", v.version.version.to_string())], t(T::MakeActive), false))
                                        @if r.world == "policy" {
                                            @if v.shadow {
                                                (action(page, &r.name, "shadow", &[("version", String::new())], t(T::StopShadow), false))
                                            } @else {
                                                (action(page, &r.name, "shadow", &[("version", v.version.version.to_string())], t(T::ShadowIt), false))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn dry_run_form(page: &OrgPage, d: &Loaded, chosen: Option<u32>) -> Markup {
    let t = |l: T| l.text(page.lang);
    let candidates: Vec<u32> = d.versions.iter().filter(|v| !v.active).map(|v| v.version.version).rev().collect();
    html! {
        p.help { (t(T::DryRunHelp)) }
        @if candidates.is_empty() {
            p.muted { (t(T::OnlyOne)) }
        } @else {
            form method="post" action=(page.href(&format!("/plugins/{}/dry-run", url_escape(&d.row.name)))) {
                (page.csrf_field())
                div.row {
                    div {
                        label for="dry-run-version" { (t(T::Candidate)) }
                        select id="dry-run-version" name="version" {
                            @for v in &candidates { option value=(v) selected[chosen == Some(*v)] { (v) } }
                        }
                    }
                    div {
                        label for="dry-run-sample" { (t(T::Sample)) }
                        input id="dry-run-sample" name="sample" type="number" min="1" max="10000" value="100";
                    }
                    button type="submit" { (t(T::Run)) }
                }
            }
        }
    }
}

fn dry_run_view(page: &OrgPage, run: &DryRun) -> Markup {
    let t = |l: T| l.text(page.lang);
    html! {
        div id="dry-run-result" {
            p { (t(T::Version)) " " (run.candidate_version) " ↔ " (run.active_version) " (" (t(T::Active)) ")" }
            div.cards {
                div.card { div { (t(T::Compared)) } div.big { (run.compared) } }
                div.card { div { (t(T::Agreed)) } div.big { (run.agreed) } }
                div.card { div { (t(T::Differed)) } div.big { (run.differed) } }
            }
            @if !run.scores.is_empty() {
                h4 { (t(T::ScoreShift)) }
                table {
                    thead { tr { th { (t(T::Field)) } th.num { (t(T::MeanShift)) } th.num { (t(T::MaxShift)) } th.num { (t(T::LabelsChanged)) } } }
                    tbody {
                        @for (score, shift) in &run.scores {
                            tr { td { (score) } td.num { (format!("{:.3}", shift.mean_abs_diff)) } td.num { (format!("{:.3}", shift.max_abs_diff)) } td.num { (shift.labels_changed) } }
                        }
                    }
                }
            }
            @if !run.differences.is_empty() {
                h4 { (t(T::Differences)) }
                @for diff in run.differences.iter().take(20) {
                    pre { (serde_json::to_string_pretty(diff).unwrap_or_default()) }
                }
            }
        }
    }
}

fn shadow_view(page: &OrgPage, d: &Loaded) -> Markup {
    let t = |l: T| l.text(page.lang);
    html! {
        @match &d.shadow {
            None => { p.muted { (t(T::ShadowPolicyOnly)) } }
            Some(s) => {
                div id="shadow-result" {
                    @match s.shadow_version {
                        None => { p.muted { (t(T::NoShadow)) } }
                        Some(v) => { p { (t(T::Version)) " " (v) " ↔ " (s.active_version) " (" (t(T::Active)) ")" } }
                    }
                    div.cards {
                        div.card { div { (t(T::Runs)) } div.big { (s.runs) } }
                        div.card { div { (t(T::Disagreements)) } div.big { (s.disagreements) } }
                    }
                    @if !s.recent_disagreements.is_empty() {
                        (trace_table(page, &s.recent_disagreements))
                    }
                }
            }
        }
    }
}

fn trace_table(page: &OrgPage, traces: &[TraceRecord]) -> Markup {
    let t = |l: T| l.text(page.lang);
    html! {
        @if traces.is_empty() {
            p.muted { (t(T::NoTrace)) }
        } @else {
            div.table-wrap {
                table.trace {
                    thead { tr {
                        th { (t(T::At)) } th.num { (t(T::Version)) } th { (t(T::Hook)) } th { (t(T::Outcome)) }
                        th { (t(T::Customer)) } th { (t(T::Summary)) } th.num { (t(T::Duration)) } th.num { (t(T::Fuel)) }
                    } }
                    tbody {
                        @for tr_ in traces {
                            tr {
                                td { (page.datetime(tr_.at)) }
                                td.num { (tr_.version) }
                                td { (tr_.hook) }
                                td { (tr_.outcome) }
                                td {
                                    @if let Some(c) = tr_.customer {
                                        a href=(page.href(&format!("/customers/{c}"))) { (c) }
                                    }
                                }
                                td {
                                    (tr_.summary.as_deref().unwrap_or(""))
                                    @if let Some(e) = &tr_.error { span.error { " " (e) } }
                                    @if tr_.logs.as_array().is_some_and(|l| !l.is_empty()) {
                                        details { summary { (t(T::Logs)) } pre { (serde_json::to_string_pretty(&tr_.logs).unwrap_or_default()) } }
                                    }
                                }
                                td.num { (tr_.duration_us) }
                                td.num { (tr_.fuel.map(|f| f.to_string()).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ----- changes -----

/// After a change: back to the list (its buttons) or the plugin's page, with a notice.
fn back(page: &OrgPage, name: &str, form: &HashMap<String, String>) -> Response {
    let to = if form.get("back").is_some_and(|b| b == "list") {
        page.href("/plugins")
    } else {
        format!("{}?done=saved", page.href(&format!("/plugins/{}", url_escape(name))))
    };
    Redirect::to(&to).into_response()
}

/// Run an owner's change; a refusal shows the plugin's page again with the reason.
async fn change(
    page: OrgPage,
    name: String,
    form: HashMap<String, String>,
    f: impl FnOnce(&crate::pipeline::Pipeline, &str, &crate::model::Actor, &str) -> Result<(), PipelineError>
    + Send
    + 'static,
) -> Result<Response, PageError> {
    let actor = page.require(Role::Owner)?;
    let (org, n) = (page.org.clone(), name.clone());
    let result = page.blocking(move |p| Ok(f(p, &org, &actor, &n))).await?;
    match result {
        Ok(()) => Ok(back(&page, &name, &form)),
        Err(e) => {
            let status = status_of(&e);
            let loaded = load(&page, name, None).await?;
            let body = detail_page(&page, &loaded, Extras { error: Some(e.to_string()), ..Extras::default() });
            Ok((status, body).into_response())
        }
    }
}

async fn enable(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    change(page, name, form, |p, org, actor, name| p.enable(org, actor, name).map(drop)).await
}

async fn disable(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    change(page, name, form, |p, org, actor, name| p.disable(org, actor, name).map(drop)).await
}

fn number<N: std::str::FromStr>(form: &HashMap<String, String>, key: &str) -> Result<Option<N>, PipelineError> {
    match form.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse().map(Some).map_err(|_| PipelineError::Invalid(format!("`{key}` must be a number, got `{v}`")))
        }
    }
}

async fn order(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    let position = number::<usize>(&form, "position");
    change(page, name, form, move |p, org, actor, name| {
        let position = position?.ok_or_else(|| PipelineError::Invalid("give the position (1 runs first)".into()))?;
        p.reorder(org, actor, name, position).map(drop)
    })
    .await
}

async fn failure_mode(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    let mode = match form.get("mode").map(String::as_str) {
        Some("open") => Ok(FailureMode::Open),
        Some("closed") => Ok(FailureMode::Closed),
        other => Err(PipelineError::Invalid(format!("the failure mode is `closed` or `open`, not {other:?}"))),
    };
    change(page, name, form, move |p, org, actor, name| p.set_failure_mode(org, actor, name, mode?).map(drop)).await
}

async fn rollback(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    let version = number::<u32>(&form, "version");
    change(page, name, form, move |p, org, actor, name| p.rollback(org, actor, name, version?).map(drop)).await
}

async fn shadow(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    let version = number::<u32>(&form, "version");
    change(page, name, form, move |p, org, actor, name| p.set_shadow(org, actor, name, version?).map(drop)).await
}

/// Save the configuration: JSON that does not parse is shown with serde's line and column; one
/// the schema refuses, with the message at the field its path names.
async fn configure(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    let actor = page.require(Role::Owner)?;
    let text = form.get("config").cloned().unwrap_or_default();
    let mut extras = Extras { config_text: Some(text.clone()), ..Extras::default() };
    match serde_json::from_str::<Value>(&text) {
        Err(e) => extras.json_error = Some(e.to_string()),
        Ok(config) => {
            let (org, n) = (page.org.clone(), name.clone());
            match page.blocking(move |p| Ok(p.configure(&org, &actor, &n, config))).await? {
                Ok(_) => return Ok(back(&page, &name, &form)),
                Err(PipelineError::Config(c)) => extras.config_error = Some((c.path, c.message)),
                Err(e) => extras.error = Some(e.to_string()),
            }
        }
    }
    let loaded = load(&page, name, None).await?;
    let body = detail_page(&page, &loaded, extras);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

async fn dry_run(
    page: OrgPage,
    Path((_, name)): Path<(String, String)>,
    axum::Form(form): Form,
) -> Result<Response, PageError> {
    page.require(Role::Owner)?;
    let version = number::<u32>(&form, "version");
    let sample = number::<u32>(&form, "sample");
    let (org, n) = (page.org.clone(), name.clone());
    let result = page
        .blocking(move |p| {
            Ok((|| {
                let version = version?.ok_or_else(|| PipelineError::Invalid("choose the candidate version".into()))?;
                let sample = sample?.unwrap_or(100).clamp(1, 10_000);
                p.dry_run(&org, &n, version, sample)
            })())
        })
        .await?;
    let loaded = load(&page, name, None).await?;
    let (status, extras) = match result {
        Ok(run) => {
            (StatusCode::OK, Extras { candidate: Some(run.candidate_version), dry_run: Some(run), ..Extras::default() })
        }
        Err(e) => (status_of(&e), Extras { error: Some(e.to_string()), ..Extras::default() }),
    };
    let body = detail_page(&page, &loaded, extras);
    Ok((status, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::top_field;

    #[test]
    fn a_config_error_lands_on_the_top_level_field_its_pointer_names() {
        assert_eq!(top_field("/welcome_tag"), "welcome_tag");
        assert_eq!(top_field("/segments/0/name"), "segments");
        assert_eq!(top_field("/a~1b"), "a/b");
        assert_eq!(top_field(""), "");
    }
}
