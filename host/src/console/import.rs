//! The import page: upload a CSV or NDJSON file, watch it land, read (and download) what
//! happened to each rejected, denied or warned row.
//!
//! The upload is written to a temporary file first and imported from there on a background
//! thread, through the same `Pipeline::import` as the API's streamed import (so every record
//! meets the organization's policies). The browser is sent to the job's page at once; htmx polls
//! its progress fragment, which counts the bytes the importer has read, until the report is
//! there. Jobs live in memory (the last [`KEPT`] of the process): a restart forgets them, and
//! the data they imported stays.

use std::collections::VecDeque;
use std::io::{Read, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};

use super::i18n::{group_thousands, labels};
use super::{L, Nav, OrgPage, PageError, url_escape};
use crate::api::{ApiError, Role, State, new_token};
use crate::pipeline::{ImportFormat, ImportKind, ImportReport};
use crate::store::now_ms;

labels! {
    enum T {
        Intro: "Add or update customers, their interactions or the distributor tree from a file. Every record goes through the organization's policies, as a single edit does; re-importing the same file changes nothing.",
            "เพิ่มหรือปรับปรุงลูกค้า การติดต่อ หรือสายงานผู้จัดจำหน่ายจากไฟล์ ทุกระเบียนผ่านนโยบายขององค์กรเหมือนการแก้ไขทีละรายการ การนำเข้าไฟล์เดิมซ้ำจะไม่เปลี่ยนแปลงอะไร";
        Kind: "What the file holds", "ข้อมูลในไฟล์";
        KindCustomers: "Customers", "ลูกค้า";
        KindInteractions: "Interactions (purchases, tickets, visits…)", "การติดต่อ (การซื้อ ตั๋วบริการ การเยี่ยม…)";
        KindDistributors: "Distributors (the sponsor tree)", "ผู้จัดจำหน่าย (สายงานผู้แนะนำ)";
        File: "File (CSV or NDJSON)", "ไฟล์ (CSV หรือ NDJSON)";
        FileHelp: "CSV columns are the NDJSON field names (tags split on |); other columns become attributes. Every record needs source and external_id.",
            "คอลัมน์ CSV ใช้ชื่อฟิลด์เดียวกับ NDJSON (แท็กคั่นด้วย |) คอลัมน์อื่นจะเป็นแอตทริบิวต์ ทุกระเบียนต้องมี source และ external_id";
        Start: "Import", "นำเข้า";
        NoFile: "Choose a file to import.", "โปรดเลือกไฟล์ที่จะนำเข้า";
        BadFormat: "This file is neither CSV nor NDJSON: name it .csv, .ndjson or .jsonl.",
            "ไฟล์นี้ไม่ใช่ CSV หรือ NDJSON โปรดตั้งชื่อไฟล์ให้ลงท้ายด้วย .csv, .ndjson หรือ .jsonl";
        TooLarge: "The file is larger than this server accepts; split it into smaller files.",
            "ไฟล์มีขนาดใหญ่กว่าที่เซิร์ฟเวอร์รับได้ โปรดแบ่งเป็นไฟล์ย่อย";
        Recent: "Recent imports", "การนำเข้าล่าสุด";
        NoRecent: "No import since the server started.", "ยังไม่มีการนำเข้าตั้งแต่เซิร์ฟเวอร์เริ่มทำงาน";
        Job: "Import", "การนำเข้า";
        Started: "Started", "เริ่มเมื่อ";
        By: "By", "โดย";
        State: "State", "สถานะ";
        Running: "Importing…", "กำลังนำเข้า…";
        Done: "Finished", "เสร็จสิ้น";
        Failed: "Stopped", "หยุดทำงาน";
        Progress: "Progress", "ความคืบหน้า";
        BytesRead: "bytes read", "ไบต์ที่อ่านแล้ว";
        Accepted: "Accepted", "รับเข้า";
        Created: "Created", "สร้างใหม่";
        Updated: "Updated", "ปรับปรุง";
        Unchanged: "Unchanged", "ไม่เปลี่ยนแปลง";
        Rejected: "Rejected", "ปฏิเสธ";
        Denied: "Denied by a policy", "นโยบายไม่อนุญาต";
        Warned: "Warnings", "คำเตือน";
        RowReport: "Rows to look at", "แถวที่ควรตรวจสอบ";
        AllGood: "Every row landed without a warning.", "ทุกแถวถูกนำเข้าโดยไม่มีคำเตือน";
        ShowingFirst: "The page shows the first rows only; the downloads have them all:", "หน้านี้แสดงเฉพาะแถวแรก ๆ ไฟล์ที่ดาวน์โหลดมีครบทุกแถว:";
        Line: "Line", "บรรทัด";
        Outcome: "Outcome", "ผลลัพธ์";
        Message: "Message", "ข้อความ";
        DownloadCsv: "Download the row report (CSV)", "ดาวน์โหลดรายงานรายแถว (CSV)";
        DownloadJson: "Download the full report (JSON)", "ดาวน์โหลดรายงานฉบับเต็ม (JSON)";
        StoppedText: "The import stopped; the batches before this point are saved, and importing the file again finishes it:",
            "การนำเข้าหยุดลง ชุดข้อมูลก่อนหน้านี้ถูกบันทึกแล้ว นำเข้าไฟล์เดิมอีกครั้งเพื่อทำต่อให้เสร็จ:";
        Another: "Import another file", "นำเข้าไฟล์อื่น";
        NoScriptRefresh: "This page refreshes itself until the import is done.", "หน้านี้จะรีเฟรชเองจนกว่าการนำเข้าจะเสร็จ";
    }
}

/// Finished jobs kept in memory per organization for their pages and downloads.
const KEPT: usize = 50;
/// Rows of the per-row report shown on the page (the downloads have them all): a page stays
/// light however bad the file.
const SHOWN: usize = 500;

pub(super) fn routes() -> Router<State> {
    Router::new()
        // The upload is bounded by the server's upload limit while it streams (see `upload`).
        .route("/orgs/{org}/import", get(show).post(upload).layer(DefaultBodyLimit::disable()))
        .route("/orgs/{org}/import/{job}", get(job_page))
        .route("/orgs/{org}/import/{job}/progress", get(progress))
        .route("/orgs/{org}/import/{job}/report.csv", get(report_csv))
        .route("/orgs/{org}/import/{job}/report.json", get(report_json))
}

/// One import: what it reads, how far it got, and its report once done.
struct Job {
    id: String,
    org: String,
    kind: ImportKind,
    file_name: String,
    by: String,
    started: i64,
    total_bytes: u64,
    read_bytes: Arc<AtomicU64>,
    outcome: Mutex<Option<Result<ImportReport, String>>>,
}

impl Job {
    fn outcome(&self) -> Option<Result<ImportReport, String>> {
        self.outcome.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

static JOBS: LazyLock<Mutex<VecDeque<Arc<Job>>>> = LazyLock::new(Default::default);

/// The job of this organization with this id; any other (another organization's included) is
/// the 404 page.
fn find(page: &OrgPage, id: &str) -> Result<Arc<Job>, PageError> {
    let jobs = JOBS.lock().unwrap_or_else(|e| e.into_inner());
    jobs.iter()
        .find(|j| j.id == id && j.org == page.org)
        .cloned()
        .ok_or_else(|| page.fail(ApiError::not_found(format!("import {id} does not exist"))))
}

fn kind_name(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Customers => "customers",
        ImportKind::Interactions => "interactions",
        ImportKind::Distributors => "distributors",
    }
}

fn kind_label(kind: ImportKind) -> T {
    match kind {
        ImportKind::Customers => T::KindCustomers,
        ImportKind::Interactions => T::KindInteractions,
        ImportKind::Distributors => T::KindDistributors,
    }
}

fn parse_kind(s: &str) -> Option<ImportKind> {
    Some(match s {
        "customers" => ImportKind::Customers,
        "interactions" => ImportKind::Interactions,
        "distributors" => ImportKind::Distributors,
        _ => return None,
    })
}

/// The format by the file's name (what a person picks a file by), else by its media type.
fn format_of(file_name: &str, content_type: Option<&str>) -> Option<ImportFormat> {
    let lower = file_name.to_ascii_lowercase();
    if lower.ends_with(".csv") {
        return Some(ImportFormat::Csv);
    }
    if [".ndjson", ".jsonl", ".json"].iter().any(|x| lower.ends_with(x)) {
        return Some(ImportFormat::Ndjson);
    }
    match content_type.map(|t| t.split(';').next().unwrap_or("").trim()) {
        Some("text/csv") => Some(ImportFormat::Csv),
        Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => Some(ImportFormat::Ndjson),
        _ => None,
    }
}

async fn show(page: OrgPage) -> Result<Markup, PageError> {
    page.require(Role::Manager)?;
    Ok(form_page(&page, ImportKind::Customers, None))
}

fn form_page(page: &OrgPage, kind: ImportKind, error: Option<T>) -> Markup {
    let action = format!("{}?_csrf={}", page.href("/import"), url_escape(&page.csrf));
    let recent: Vec<Arc<Job>> = {
        let jobs = JOBS.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().rev().filter(|j| j.org == page.org).cloned().collect()
    };
    let t = |l: T| l.text(page.lang);
    page.render(
        Nav::Import,
        page.t(L::Import),
        html! {
            p.help { (t(T::Intro)) }
            form method="post" action=(action) enctype="multipart/form-data" {
                (page.csrf_field())
                label for="import-kind" { (t(T::Kind)) }
                select id="import-kind" name="kind" {
                    @for k in [ImportKind::Customers, ImportKind::Interactions, ImportKind::Distributors] {
                        option value=(kind_name(k)) selected[k == kind] { (t(kind_label(k))) }
                    }
                }
                label for="import-file" { (t(T::File)) }
                input id="import-file" name="file" type="file" accept=".csv,.ndjson,.jsonl,.json,text/csv"
                    required aria-describedby=(if error.is_some() { "import-file-error" } else { "import-file-help" })
                    aria-invalid=[error.map(|_| "true")];
                @if let Some(e) = error {
                    p.error id="import-file-error" role="alert" { (t(e)) }
                }
                p.help id="import-file-help" { (t(T::FileHelp)) }
                button type="submit" { (t(T::Start)) }
            }
            h2 { (t(T::Recent)) }
            @if recent.is_empty() {
                p.muted { (t(T::NoRecent)) }
            } @else {
                div.table-wrap {
                    table {
                        thead { tr { th { (t(T::Job)) } th { (t(T::Kind)) } th { (t(T::Started)) } th { (t(T::By)) } th { (t(T::State)) } } }
                        tbody {
                            @for j in &recent {
                                tr {
                                    td { a href=(page.href(&format!("/import/{}", j.id))) { (j.file_name) } }
                                    td { (t(kind_label(j.kind))) }
                                    td { (page.datetime(j.started)) }
                                    td { (j.by) }
                                    td { (t(state_label(j))) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn state_label(job: &Job) -> T {
    match job.outcome() {
        None => T::Running,
        Some(Ok(_)) => T::Done,
        Some(Err(_)) => T::Failed,
    }
}

/// Counts the bytes the importer has read, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Deletes the uploaded copy however the import ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Take the upload (a `kind` field and a `file`), start the import, and send the browser to
/// its page.
async fn upload(page: OrgPage, Extract(state): Extract<State>, mut form: Multipart) -> Result<Response, PageError> {
    let actor = page.require(Role::Manager)?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        page.fail(ApiError::bad_request(format!("the upload was cut off or malformed: {e}")))
    };
    let mut kind = ImportKind::Customers;
    let mut file: Option<(TempFile, String, Option<String>, u64)> = None;
    let id = new_token("imp")[..20].to_owned();
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "kind" => {
                let text = field.text().await.map_err(bad)?;
                kind = parse_kind(&text).ok_or_else(|| {
                    page.fail(ApiError::bad_request(format!(
                        "`kind` must be customers, interactions or distributors, not `{text}`"
                    )))
                })?;
            }
            "file" if file.is_some() => {
                return Err(page.fail(ApiError::bad_request("send one file per import")));
            }
            "file" => {
                let name = field.file_name().unwrap_or("").to_owned();
                let content_type = field.content_type().map(str::to_owned);
                let path = std::env::temp_dir().join(format!("rapport-console-{id}"));
                // Customer data: readable by this user only, and never an existing file.
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut out = options
                    .open(&path)
                    .map_err(|e| page.fail(ApiError::internal(format!("cannot hold the upload: {e}"))))?;
                // Only now ours to delete.
                let temp = TempFile(path.clone());
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len() as u64;
                    if size > state.limits.upload as u64 {
                        return Ok(refuse(&page, kind, T::TooLarge, StatusCode::PAYLOAD_TOO_LARGE));
                    }
                    out.write_all(&chunk)
                        .map_err(|e| page.fail(ApiError::internal(format!("cannot hold the upload: {e}"))))?;
                }
                file = Some((temp, name, content_type, size));
            }
            // The CSRF token travels in the URL; any other field is ignored.
            _ => {}
        }
    }
    let Some((temp, file_name, content_type, size)) = file.filter(|f| !f.1.is_empty() || f.3 > 0) else {
        return Ok(refuse(&page, kind, T::NoFile, StatusCode::UNPROCESSABLE_ENTITY));
    };
    let Some(format) = format_of(&file_name, content_type.as_deref()) else {
        return Ok(refuse(&page, kind, T::BadFormat, StatusCode::UNPROCESSABLE_ENTITY));
    };
    let job = Arc::new(Job {
        id: id.clone(),
        org: page.org.clone(),
        kind,
        file_name: if file_name.is_empty() { "upload".into() } else { file_name },
        by: actor.name.clone(),
        started: now_ms(),
        total_bytes: size,
        read_bytes: Arc::default(),
        outcome: Mutex::new(None),
    });
    {
        let mut jobs = JOBS.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push_back(job.clone());
        // Forget the oldest finished jobs of this organization beyond KEPT: a running job, or
        // another organization's, is never dropped to make room.
        let mut of_org = jobs.iter().filter(|j| j.org == job.org).count();
        jobs.retain(|j| {
            let forget = of_org > KEPT && j.org == job.org && j.outcome.lock().is_ok_and(|o| o.is_some());
            of_org -= usize::from(forget);
            !forget
        });
    }
    let pipeline = state.pipeline.clone();
    let org = page.org.clone();
    tokio::task::spawn_blocking(move || {
        // Whatever happens below — a panic included — the page learns the job ended.
        let import = std::panic::AssertUnwindSafe(|| {
            std::fs::File::open(&temp.0).map_err(|e| format!("cannot read the upload back: {e}")).and_then(|f| {
                let reader =
                    std::io::BufReader::with_capacity(256 << 10, Counting { inner: f, read: job.read_bytes.clone() });
                pipeline.import(&org, &actor, job.kind, format, reader, |_| {}, false).map_err(|e| e.to_string())
            })
        });
        let result = std::panic::catch_unwind(import).unwrap_or_else(|_| {
            Err("the import stopped on an internal error; nothing past its last batch landed".into())
        });
        drop(temp);
        *job.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    });
    Ok(Redirect::to(&page.href(&format!("/import/{id}"))).into_response())
}

fn refuse(page: &OrgPage, kind: ImportKind, error: T, status: StatusCode) -> Response {
    (status, form_page(page, kind, Some(error))).into_response()
}

async fn job_page(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Markup, PageError> {
    page.require(Role::Manager)?;
    let job = find(&page, &id)?;
    let t = |l: T| l.text(page.lang);
    Ok(page.render(
        Nav::Import,
        &format!("{} · {}", t(T::Job), job.file_name),
        html! {
            dl.facts {
                dt { (t(T::Kind)) } dd { (t(kind_label(job.kind))) }
                dt { (t(T::Started)) } dd { (page.datetime(job.started)) }
                dt { (t(T::By)) } dd { (job.by) }
            }
            (status_fragment(&page, &job))
            p { a href=(page.href("/import")) { (t(T::Another)) } }
        },
    ))
}

/// The part of the job's page that changes: while the import runs it asks htmx to fetch it
/// again every half second (and, without JavaScript, the page refreshes itself).
fn status_fragment(page: &OrgPage, job: &Job) -> Markup {
    let t = |l: T| l.text(page.lang);
    let outcome = job.outcome();
    let total = job.total_bytes.max(1);
    let read = if outcome.is_some() { total } else { job.read_bytes.load(Ordering::Relaxed).min(total) };
    let percent = read * 100 / total;
    let poll = page.href(&format!("/import/{}/progress", job.id));
    html! {
        section id="import-status" aria-live="polite"
            hx-get=[outcome.is_none().then_some(poll.as_str())]
            hx-trigger=[outcome.is_none().then_some("load delay:500ms")]
            hx-swap=[outcome.is_none().then_some("outerHTML")] {
            h2 { (t(T::State)) ": " span id="import-state" data-state=(match &outcome { None => "running", Some(Ok(_)) => "done", Some(Err(_)) => "failed" }) { (t(state_label(job))) } }
            label for="import-progress" { (t(T::Progress)) " " (percent) "%" }
            progress id="import-progress" max="100" value=(percent) { (percent) "%" }
            p.muted { (group_thousands(read.min(job.total_bytes))) " / " (group_thousands(job.total_bytes)) " " (t(T::BytesRead)) }
            @match &outcome {
                None => {
                    noscript { meta http-equiv="refresh" content="2"; p.help { (t(T::NoScriptRefresh)) } }
                }
                Some(Err(e)) => {
                    p.error role="alert" { (t(T::StoppedText)) " " (e) }
                }
                Some(Ok(report)) => { (report_view(page, job, report)) }
            }
        }
    }
}

/// One row of the per-row report: its line, what happened, why.
fn rows(report: &ImportReport) -> Vec<(u64, &'static str, &str)> {
    let mut rows: Vec<(u64, &'static str, &str)> = report
        .rejected
        .iter()
        .map(|r| {
            (r.line, if r.error.starts_with("denied by policy") { "denied" } else { "rejected" }, r.error.as_str())
        })
        .chain(report.warnings.iter().map(|w| (w.line, "warning", w.warning.as_str())))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

fn report_view(page: &OrgPage, job: &Job, report: &ImportReport) -> Markup {
    let t = |l: T| l.text(page.lang);
    let rows = rows(report);
    let denied = rows.iter().filter(|r| r.1 == "denied").count() as u64;
    let rejected = report.rejected.len() as u64 - denied;
    let card = |label: T, n: u64, id: &str| {
        html! { div.card { div { (t(label)) } div.big id=(id) { (group_thousands(n)) } } }
    };
    html! {
        div.cards {
            (card(T::Accepted, report.accepted, "import-accepted"))
            (card(T::Created, report.created, "import-created"))
            (card(T::Updated, report.updated, "import-updated"))
            (card(T::Unchanged, report.unchanged, "import-unchanged"))
            (card(T::Rejected, rejected, "import-rejected"))
            (card(T::Denied, denied, "import-denied"))
            (card(T::Warned, report.warnings.len() as u64, "import-warnings"))
        }
        h2 { (t(T::RowReport)) }
        p {
            a.button.secondary href=(page.href(&format!("/import/{}/report.csv", job.id))) download { (t(T::DownloadCsv)) }
            " "
            a.button.secondary href=(page.href(&format!("/import/{}/report.json", job.id))) download { (t(T::DownloadJson)) }
        }
        @if rows.is_empty() {
            p.notice { (t(T::AllGood)) }
        } @else {
            @if rows.len() > SHOWN {
                p.warning { (t(T::ShowingFirst)) " " (group_thousands(SHOWN as u64)) " / " (group_thousands(rows.len() as u64)) }
            }
            div.table-wrap {
                table id="import-rows" {
                    thead { tr { th.num { (t(T::Line)) } th { (t(T::Outcome)) } th { (t(T::Message)) } } }
                    tbody {
                        @for (line, outcome, message) in rows.iter().take(SHOWN) {
                            tr data-outcome=(outcome) {
                                td.num { (line) }
                                td { (t(match *outcome { "denied" => T::Denied, "warning" => T::Warned, _ => T::Rejected })) }
                                td { (message) }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn progress(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Markup, PageError> {
    page.require(Role::Manager)?;
    let job = find(&page, &id)?;
    Ok(status_fragment(&page, &job))
}

/// The finished report, or a 409 page while the import still runs.
fn finished(page: &OrgPage, job: &Job) -> Result<ImportReport, PageError> {
    match job.outcome() {
        Some(Ok(report)) => Ok(report),
        Some(Err(e)) => Err(page.fail(ApiError::new(StatusCode::CONFLICT, "Import stopped", e))),
        None => Err(page.fail(ApiError::new(
            StatusCode::CONFLICT,
            "Import running",
            "the import is still running; its report is ready when it finishes",
        ))),
    }
}

fn attachment(content_type: &'static str, file_name: String, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{file_name}\"");
    ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

async fn report_csv(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Response, PageError> {
    page.require(Role::Manager)?;
    let job = find(&page, &id)?;
    let report = finished(&page, &job)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let write = |w: &mut csv::Writer<Vec<u8>>, rec: &[&str]| {
        w.write_record(rec).map_err(|e| page.fail(ApiError::internal(format!("writing the report: {e}"))))
    };
    write(&mut w, &["line", "outcome", "message"])?;
    for (line, outcome, message) in rows(&report) {
        write(&mut w, &[&line.to_string(), outcome, &crate::pipeline::report::spreadsheet_safe(message)])?;
    }
    let bytes = w.into_inner().map_err(|e| page.fail(ApiError::internal(format!("writing the report: {e}"))))?;
    Ok(attachment(
        "text/csv; charset=utf-8",
        format!("import-{}-report.csv", job.id),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

async fn report_json(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Response, PageError> {
    page.require(Role::Manager)?;
    let job = find(&page, &id)?;
    let report = finished(&page, &job)?;
    let body = serde_json::json!({
        "file": job.file_name, "kind": kind_name(job.kind), "started_at": job.started, "by": job.by, "report": report,
    });
    Ok(attachment("application/json", format!("import-{}-report.json", job.id), body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{RowError, RowWarning};

    #[test]
    fn the_format_follows_the_file_name_then_the_media_type() {
        assert_eq!(format_of("people.CSV", None), Some(ImportFormat::Csv));
        assert_eq!(format_of("people.jsonl", Some("text/csv")), Some(ImportFormat::Ndjson));
        assert_eq!(format_of("export", Some("text/csv; charset=utf-8")), Some(ImportFormat::Csv));
        assert_eq!(format_of("people.xlsx", Some("application/vnd.ms-excel")), None);
    }

    #[test]
    fn the_row_report_tells_denials_from_rejections_and_orders_by_line() {
        let report = ImportReport {
            rejected: vec![
                RowError { line: 7, error: "denied by policy `require-contact`: no contact (field `email`)".into() },
                RowError { line: 2, error: "missing field `external_id`".into() },
            ],
            warnings: vec![RowWarning { line: 4, warning: "require-contact: no name".into() }],
            ..ImportReport::default()
        };
        let outcomes: Vec<(u64, &str)> = rows(&report).iter().map(|r| (r.0, r.1)).collect();
        assert_eq!(outcomes, [(2, "rejected"), (4, "warning"), (7, "denied")]);
    }
}
