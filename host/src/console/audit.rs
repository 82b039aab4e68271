//! The audit log, filtered by who, what and when. Managers and owners only, as over the API.
//!
//! The first page is the latest entries: the store reads the log newest first from a cursor
//! without conditions, so the filter is applied here over a bounded window of entries per page
//! (`SCAN`), and the page links to older entries when the window ended before the log did.

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::i18n::labels;
use super::{L, Nav, OrgPage, PageError, url_escape};
use crate::api::{ApiError, Role, State};
use crate::store::AuditEntry;
use crate::store::filter::parse_time;

labels! {
    enum T {
        Who: "Who", "ผู้ดำเนินการ";
        WhoHelp: "A key's name (or part of it), or admin.", "ชื่อคีย์ (หรือบางส่วน) หรือ admin";
        What: "What", "การกระทำ";
        WhatHelp: "An action or entity, e.g. customer.update, import, plugin.", "การกระทำหรือประเภทข้อมูล เช่น customer.update, import, plugin";
        From: "From", "ตั้งแต่";
        To: "To (inclusive)", "ถึง (รวมวันนี้)";
        Filter: "Filter", "กรอง";
        When: "When", "เวลา";
        Action: "Action", "การกระทำ";
        Entity: "Entity", "ข้อมูล";
        Detail: "Detail", "รายละเอียด";
        None: "No entry matches.", "ไม่พบรายการที่ตรงกัน";
        Older: "Older entries", "รายการก่อนหน้า";
        Newest: "Latest entries", "รายการล่าสุด";
        BadDate: "Write a date as 2026-11-23.", "โปรดเขียนวันที่ในรูปแบบ 2026-11-23";
        Scanned: "Entries up to", "ตรวจถึงรายการที่";
    }
}

pub(super) fn routes() -> Router<State> {
    Router::new().route("/orgs/{org}/audit", get(show))
}

/// Entries read per page at most, whether or not they match.
const SCAN: u32 = 5_000;
/// Matching entries shown per page.
const SHOW: usize = 100;

#[derive(Deserialize, Default)]
struct AuditQuery {
    #[serde(default)]
    who: String,
    #[serde(default)]
    what: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    /// Entries older than this id (the "older entries" link); the latest when empty.
    #[serde(default)]
    before: String,
}

struct Found {
    entries: Vec<AuditEntry>,
    /// Where the page of older entries starts, when the log goes on.
    older: Option<i64>,
}

async fn show(page: OrgPage, Query(q): Query<AuditQuery>) -> Result<Markup, PageError> {
    page.require(Role::Manager)?;
    let date = |text: &str, field: &str| -> Result<Option<i64>, PageError> {
        match text.trim() {
            "" => Ok(None),
            t => parse_time(t).map(Some).ok_or_else(|| {
                page.fail(ApiError::bad_request(T::BadDate.text(page.lang)).with_field(Some(field.into())))
            }),
        }
    };
    let from = date(&q.from, "from")?;
    // `to` is a day, included: up to the start of the next day.
    let to = date(&q.to, "to")?.map(|t| t + 86_400_000);
    let before: Option<i64> = q.before.parse().ok();
    let (who, what) = (q.who.trim().to_lowercase(), q.what.trim().to_lowercase());
    let org = page.org.clone();
    let found = page
        .blocking(move |p| {
            let store = p.org(&org)?;
            let mut entries = Vec::new();
            let mut cursor = before;
            let mut scanned = 0u32;
            loop {
                let batch = store.audit_newest(cursor, 1000)?;
                let done = batch.len() < 1000;
                for e in batch {
                    cursor = Some(e.id);
                    scanned += 1;
                    let matches = (who.is_empty() || e.actor.to_lowercase().contains(&who))
                        && (what.is_empty()
                            || e.action.to_lowercase().contains(&what)
                            || e.entity.to_lowercase().contains(&what))
                        && from.is_none_or(|f| e.at >= f)
                        && to.is_none_or(|t| e.at < t);
                    if matches {
                        entries.push(e);
                        if entries.len() == SHOW {
                            return Ok(Found { entries, older: cursor });
                        }
                    }
                }
                if done {
                    return Ok(Found { entries, older: None });
                }
                if scanned >= SCAN {
                    return Ok(Found { entries, older: cursor });
                }
            }
        })
        .await?;
    Ok(render(&page, &q, &found))
}

fn render(page: &OrgPage, q: &AuditQuery, f: &Found) -> Markup {
    let t = |x: T| x.text(page.lang);
    let here = page.href("/audit");
    let filters = format!(
        "{here}?who={}&what={}&from={}&to={}",
        url_escape(&q.who),
        url_escape(&q.what),
        url_escape(&q.from),
        url_escape(&q.to)
    );
    let older = f.older.map(|n| format!("{filters}&before={n}"));
    let body = html! {
        form method="get" action=(here) {
            div.row {
                div { label for="who" { (t(T::Who)) } input id="who" name="who" value=(q.who) aria-describedby="who-help"; p.help id="who-help" { (t(T::WhoHelp)) } }
                div { label for="what" { (t(T::What)) } input id="what" name="what" value=(q.what) aria-describedby="what-help"; p.help id="what-help" { (t(T::WhatHelp)) } }
                div { label for="from" { (t(T::From)) } input id="from" name="from" type="date" value=(q.from); }
                div { label for="to" { (t(T::To)) } input id="to" name="to" type="date" value=(q.to); }
                button type="submit" { (t(T::Filter)) }
            }
        }
        @if f.entries.is_empty() {
            p.muted { (t(T::None)) }
        } @else {
            div.table-wrap { table {
                thead { tr {
                    th scope="col" { (t(T::When)) } th scope="col" { (t(T::Who)) } th scope="col" { (t(T::Action)) }
                    th scope="col" { (t(T::Entity)) } th scope="col" { (t(T::Detail)) }
                } }
                tbody {
                    @for e in &f.entries {
                        tr {
                            td { (page.datetime(e.at)) }
                            td { (e.actor) }
                            td { code { (e.action) } }
                            td {
                                (e.entity)
                                @if let Some(id) = e.entity_id {
                                    " "
                                    @if e.entity == "customer" { a href=(page.href(&format!("/customers/{id}"))) { "#" (id) } } @else { "#" (id) }
                                }
                            }
                            td { details { summary { (t(T::Detail)) } pre { (serde_json::to_string_pretty(&e.detail).unwrap_or_default()) } } }
                        }
                    }
                }
            } }
        }
        @if older.is_some() || !q.before.is_empty() {
            nav.pager aria-label="Pages" {
                @if !q.before.is_empty() { a href=(filters) { (t(T::Newest)) } }
                @if let Some(older) = older { a href=(older) rel="next" { (t(T::Older)) } }
            }
        }
    };
    page.render(Nav::Audit, L::Audit.text(page.lang), body)
}
