//! Customers: the search (the filter language, its errors shown at the bad token), paging, saved
//! segments; the profile (timeline, scores with explanations, consents, distributor, branch);
//! edit with the policies' decision shown inline; merge, export, erase with a confirmation.
//!
//! Every handler checks the caller as the API handler of the same data does: the role, and for a
//! scoped agent the customer inside the scope — any other customer is the 404 page.

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::i18n::{group_thousands, labels, money};
use super::{L, Nav, OrgPage, PageError, url_escape};
use crate::api::{ApiError, Role, Scope, State, place};
use crate::model::{Customer, Id, Origin};
use crate::pipeline::{Pipeline, PipelineError, Warning, Write};
use crate::store::filter::{self, FilterError};
use crate::store::{Profile, Segment, StoreError};

labels! {
    enum T {
        Filter: "Filter", "ตัวกรอง";
        FilterHelp: "The filter language, e.g. name ~ \"สมชาย\" and branch = \"bkk-01\", or tag = \"vip\" and purchases.count > 3",
            "ภาษาตัวกรอง เช่น name ~ \"สมชาย\" and branch = \"bkk-01\" หรือ tag = \"vip\" and purchases.count > 3";
        Search: "Search", "ค้นหา";
        Segment: "Saved segment", "กลุ่มลูกค้าที่บันทึกไว้";
        AnySegment: "(none)", "(ไม่เลือก)";
        Apply: "Apply", "ใช้";
        SaveSegment: "Save this filter as a segment", "บันทึกตัวกรองนี้เป็นกลุ่มลูกค้า";
        SegmentName: "Segment name", "ชื่อกลุ่มลูกค้า";
        Description: "Description", "คำอธิบาย";
        Save: "Save", "บันทึก";
        SegmentSaved: "Segment saved.", "บันทึกกลุ่มลูกค้าแล้ว";
        Replace: "Replace the segment of this name if there is one", "แทนที่กลุ่มลูกค้าชื่อนี้หากมีอยู่แล้ว";
        NameNeeded: "Give the segment a name.", "โปรดตั้งชื่อกลุ่มลูกค้า";
        NameTaken: "A segment of this name exists already: choose another name, or tick “Replace” to overwrite it.",
            "มีกลุ่มลูกค้าชื่อนี้อยู่แล้ว โปรดเลือกชื่ออื่น หรือเลือก “แทนที่” เพื่อเขียนทับ";
        Matching: "customers match", "รายที่ตรงกัน";
        NoMatch: "No customer matches.", "ไม่พบลูกค้าที่ตรงกัน";
        Next: "Next page", "หน้าถัดไป";
        First: "First page", "หน้าแรก";
        Id: "ID", "รหัส";
        Name: "Name", "ชื่อ";
        Email: "Email", "อีเมล";
        Phone: "Phone", "โทรศัพท์";
        Branch: "Branch", "สาขา";
        Distributor: "Distributor", "ผู้จัดจำหน่าย";
        Tags: "Tags", "แท็ก";
        TagsHelp: "Separated by commas.", "คั่นด้วยเครื่องหมายจุลภาค";
        Segments: "Segments", "กลุ่มลูกค้า";
        Scores: "Scores", "คะแนน";
        Score: "Score", "คะแนน";
        Value: "Value", "ค่า";
        Label: "Label", "ป้ายกำกับ";
        Why: "Explanation", "คำอธิบาย";
        NoScores: "No scores yet.", "ยังไม่มีคะแนน";
        Consents: "Consents", "ความยินยอม";
        Purpose: "Purpose", "วัตถุประสงค์";
        Channel: "Channel", "ช่องทาง";
        Basis: "Lawful basis", "ฐานทางกฎหมาย";
        Given: "Given", "ให้เมื่อ";
        Withdrawn: "Withdrawn", "ถอนเมื่อ";
        Source: "Source", "แหล่งที่มา";
        NoConsents: "No consent recorded.", "ไม่มีบันทึกความยินยอม";
        Timeline: "Timeline", "ไทม์ไลน์";
        NoTimeline: "No interactions yet.", "ยังไม่มีการติดต่อ";
        When: "When", "เวลา";
        Kind: "Kind", "ประเภท";
        Subject: "Subject", "เรื่อง";
        Amount: "Amount", "จำนวนเงิน";
        Ticket: "Ticket", "ตั๋ว";
        Older: "Older interactions", "การติดต่อก่อนหน้า";
        Newest: "Newest interactions", "การติดต่อล่าสุด";
        Edit: "Edit", "แก้ไข";
        EditTitle: "Edit customer", "แก้ไขข้อมูลลูกค้า";
        Cancel: "Cancel", "ยกเลิก";
        Saved: "Saved.", "บันทึกแล้ว";
        Unchanged: "Nothing changed.", "ไม่มีการเปลี่ยนแปลง";
        Warning: "Warning", "คำเตือน";
        DeniedBy: "Refused by policy", "ถูกปฏิเสธโดยนโยบาย";
        Stale: "Someone changed this customer since you opened the form. Reload it to see their change, then edit again.",
            "มีผู้อื่นแก้ไขลูกค้ารายนี้หลังจากที่คุณเปิดแบบฟอร์ม โปรดโหลดใหม่แล้วแก้ไขอีกครั้ง";
        Export: "Export (JSON)", "ส่งออก (JSON)";
        Merge: "Merge a duplicate into this customer", "รวมข้อมูลซ้ำเข้ากับลูกค้ารายนี้";
        MergeHelp: "The duplicate's timeline, consents, tags and external ids move here; the duplicate is removed.",
            "ไทม์ไลน์ ความยินยอม แท็ก และรหัสภายนอกของรายการซ้ำจะย้ายมาที่นี่ และรายการซ้ำจะถูกลบ";
        DuplicateId: "Duplicate's ID", "รหัสของรายการซ้ำ";
        MergeButton: "Merge", "รวม";
        Merged: "Merged.", "รวมแล้ว";
        Erase: "Erase this person", "ลบข้อมูลบุคคลนี้";
        EraseTitle: "Erase a person", "ลบข้อมูลบุคคล";
        EraseWarning: "Erasure removes the person's record, contact details, timeline content and scores, and scrubs them from the audit log. It cannot be undone.",
            "การลบจะนำข้อมูลบุคคล ช่องทางติดต่อ เนื้อหาไทม์ไลน์ และคะแนนออก และลบออกจากบันทึกการตรวจสอบ ไม่สามารถย้อนกลับได้";
        EraseConfirm: "Type the customer's ID to confirm", "พิมพ์รหัสลูกค้าเพื่อยืนยัน";
        EraseMismatch: "The ID typed does not match this customer; nothing was erased.",
            "รหัสที่พิมพ์ไม่ตรงกับลูกค้ารายนี้ ยังไม่มีการลบข้อมูล";
        EraseButton: "Erase permanently", "ลบถาวร";
        Erased: "The person was erased.", "ลบข้อมูลบุคคลแล้ว";
        NotANumber: "Enter a number.", "โปรดใส่ตัวเลข";
        Customer: "Customer", "ลูกค้า";
    }
}

pub(super) fn routes() -> Router<State> {
    Router::new()
        .route("/orgs/{org}/customers", get(list))
        .route("/orgs/{org}/customers/segments", axum::routing::post(save_segment))
        .route("/orgs/{org}/customers/{id}", get(profile))
        .route("/orgs/{org}/customers/{id}/edit", get(edit_form).post(edit))
        .route("/orgs/{org}/customers/{id}/merge", axum::routing::post(merge))
        .route("/orgs/{org}/customers/{id}/export", get(export))
        .route("/orgs/{org}/customers/{id}/erase", get(erase_form).post(erase))
}

const PAGE: u32 = 25;

/// The customer `id` if the caller may see it; the 404 page otherwise (missing or outside the
/// scope: the same answer).
fn visible(p: &Pipeline, org: &str, scope: &Scope, id: Id) -> Result<Customer, ApiError> {
    p.view(org, scope.clone())?
        .customer(id)?
        .ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))
}

fn customer_id(page: &OrgPage, text: &str) -> Result<Id, PageError> {
    text.parse().map_err(|_| page.fail(ApiError::not_found(format!("`{text}` is not a customer id"))))
}

// ----- the list -----

#[derive(Deserialize, Default)]
struct ListQuery {
    /// The filter (also `?filter=`, as the API names it).
    #[serde(default, alias = "filter")]
    q: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    cursor: String,
    /// Set after an erasure, to say it was done.
    #[serde(default)]
    erased: String,
}

struct Listing {
    filter: String,
    error: Option<FilterError>,
    items: Vec<Customer>,
    next: Option<String>,
    total: u64,
    segments: Vec<Segment>,
}

async fn list(page: OrgPage, Query(q): Query<ListQuery>) -> Result<Markup, PageError> {
    let listing = search(&page, q.q.clone(), q.segment.clone(), q.cursor.clone()).await?;
    let notice = (!q.erased.is_empty()).then_some(T::Erased);
    Ok(render_list(&page, &q, &listing, notice, None))
}

async fn search(page: &OrgPage, q: String, segment: String, cursor: String) -> Result<Listing, PageError> {
    let scope = page.caller.scope();
    let org = page.org.clone();
    page.blocking(move |p| {
        let view = p.view(&org, scope)?;
        let segments = view.org().segments()?;
        let filter = match (q.trim(), segments.iter().find(|s| s.name == segment)) {
            ("", Some(s)) => s.filter.clone(),
            (q, _) => q.to_owned(),
        };
        // The caller's own filter, parsed alone: its error is shown at its token.
        if let Err(error) = filter::parse(&filter) {
            return Ok(Listing { filter, error: Some(error), items: vec![], next: None, total: 0, segments });
        }
        let cursor = (!cursor.is_empty()).then_some(cursor.as_str());
        let found = view.list_customers(&filter, cursor, PAGE)?;
        let total = view.count_customers(&filter)?;
        Ok(Listing { filter, error: None, items: found.items, next: found.next_cursor, total, segments })
    })
    .await
}

fn render_list(page: &OrgPage, q: &ListQuery, l: &Listing, notice: Option<T>, draft: Option<&SegmentDraft>) -> Markup {
    let lang = page.lang;
    let t = |x: T| x.text(lang);
    let here = page.href("/customers");
    let body = html! {
        @if let Some(n) = notice { p.notice role="status" { (t(n)) } }
        form.search method="get" action=(here) role="search"
            hx-get=(here) hx-target="#results" hx-select="#results" hx-swap="outerHTML" hx-push-url="true"
            hx-trigger="submit, input changed delay:500ms from:#q" {
            div.row {
                div {
                    label for="q" { (t(T::Filter)) }
                    input id="q" name="q" type="search" value=(l.filter) autocomplete="off" spellcheck="false"
                        aria-describedby="q-help" aria-invalid=[l.error.as_ref().map(|_| "true")];
                }
                @if !l.segments.is_empty() {
                    div {
                        label for="segment" { (t(T::Segment)) }
                        select id="segment" name="segment" {
                            option value="" { (t(T::AnySegment)) }
                            @for s in &l.segments {
                                option value=(s.name) selected[s.name == q.segment] { (s.name) }
                            }
                        }
                    }
                }
                button type="submit" { (t(T::Search)) }
            }
            p.help id="q-help" { (t(T::FilterHelp)) }
        }
        div id="results" {
            @if let Some(e) = &l.error {
                (filter_error(&l.filter, e))
            } @else {
                p role="status" { strong { (group_thousands(l.total)) } " " (t(T::Matching)) }
                @if l.items.is_empty() {
                    p.muted { (t(T::NoMatch)) }
                } @else {
                    div.table-wrap { table {
                        thead { tr {
                            th.num scope="col" { (t(T::Id)) } th scope="col" { (t(T::Name)) } th scope="col" { (t(T::Email)) }
                            th scope="col" { (t(T::Phone)) } th scope="col" { (t(T::Branch)) } th scope="col" { (t(T::Tags)) }
                        } }
                        tbody {
                            @for c in &l.items {
                                tr {
                                    td.num { (c.id) }
                                    td { a href=(page.href(&format!("/customers/{}", c.id))) { (c.name.as_deref().unwrap_or("—")) } }
                                    td { (c.email.as_deref().unwrap_or("")) }
                                    td { (c.phone.as_deref().unwrap_or("")) }
                                    td { (c.branch.as_deref().unwrap_or("")) }
                                    td { (c.tags.join(", ")) }
                                }
                            }
                        }
                    } }
                }
                nav.pager aria-label="Pages" {
                    @if !q.cursor.is_empty() {
                        a href=(format!("{here}?q={}", url_escape(&l.filter))) { (t(T::First)) }
                    }
                    @if let Some(next) = &l.next {
                        a href=(format!("{here}?q={}&cursor={}", url_escape(&l.filter), url_escape(next))) rel="next" { (t(T::Next)) }
                    }
                }
                @if page.can(Role::Manager) && !l.filter.trim().is_empty() {
                    @let d = draft.cloned().unwrap_or_default();
                    details open[draft.is_some()] {
                        summary { (t(T::SaveSegment)) }
                        form method="post" action=(page.href("/customers/segments")) {
                            (page.csrf_field())
                            input type="hidden" name="filter" value=(l.filter);
                            @if let Some(message) = &d.general {
                                p.error role="alert" { (message) }
                            }
                            div.row {
                                div {
                                    label for="seg-name" { (t(T::SegmentName)) }
                                    input id="seg-name" name="name" required value=(d.name)
                                        aria-invalid=[d.name_error.as_ref().map(|_| "true")]
                                        aria-describedby=[d.name_error.as_ref().map(|_| "seg-name-error")];
                                    @if let Some(message) = &d.name_error {
                                        p.error id="seg-name-error" role="alert" { (message) }
                                    }
                                }
                                div { label for="seg-desc" { (t(T::Description)) } input id="seg-desc" name="description" value=(d.description); }
                                button type="submit" { (t(T::Save)) }
                            }
                            div.field {
                                input id="seg-replace" name="replace" type="checkbox" value="1" checked[d.replace];
                                " "
                                label for="seg-replace" { (t(T::Replace)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page.render(Nav::Customers, L::Customers.text(lang), body)
}

/// The filter with its bad token marked and a caret under it, and the message.
fn filter_error(text: &str, e: &FilterError) -> Markup {
    let chars: Vec<char> = text.chars().collect();
    let at = e.position.min(chars.len());
    let end = (at + 1..=chars.len())
        .find(|&i| i == chars.len() || chars[i].is_whitespace() || "()=<>!~,".contains(chars[i]))
        .unwrap_or(chars.len())
        .max((at + 1).min(chars.len()));
    let before: String = chars[..at].iter().collect();
    let token: String = chars[at..end].iter().collect();
    let after: String = chars[end..].iter().collect();
    // Thai vowel and tone marks above or below a consonant take no column of their own.
    let columns = chars[..at]
        .iter()
        .filter(|c| !matches!(c, '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}'))
        .count();
    let caret = format!("{}^", " ".repeat(columns));
    html! {
        div.filter-error role="alert" id="q-error" {
            p.error { (e.message) }
            pre.filter-error aria-hidden="true" { (before) mark { (if token.is_empty() { " ".to_owned() } else { token }) } (after) "\n" (caret) }
        }
    }
}

#[derive(Deserialize)]
struct SegmentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    filter: String,
    /// The checkbox: overwrite a segment of the same name.
    #[serde(default)]
    replace: Option<String>,
}

/// The save-segment form as typed, with what was wrong with it, to show it again.
#[derive(Default, Clone)]
struct SegmentDraft {
    name: String,
    description: String,
    replace: bool,
    name_error: Option<String>,
    /// A problem not of the name (a bad filter is shown at the search field by the listing).
    general: Option<String>,
}

/// Saves the filter as a segment and goes to it; a problem shows the search again with the form
/// as typed and the reason at its field. An existing name is refused unless "replace" is ticked.
async fn save_segment(page: OrgPage, axum::Form(form): axum::Form<SegmentForm>) -> Result<Response, PageError> {
    let actor = page.require(Role::Manager)?;
    let org = page.org.clone();
    let lang = page.lang;
    let name = form.name.trim().to_owned();
    let replace = form.replace.as_deref().is_some_and(|v| !v.is_empty());
    let (filter_text, description) = (form.filter.clone(), form.description.clone());
    let saved_name = name.clone();
    // `Ok(Err(draft))`: the form's problem, to show at its field.
    let outcome = page
        .blocking(move |p| {
            let mut draft =
                SegmentDraft { name: name.clone(), description: description.clone(), replace, ..Default::default() };
            if name.is_empty() {
                draft.name_error = Some(T::NameNeeded.text(lang).to_owned());
                return Ok(Err(draft));
            }
            if let Err(e) = filter::parse(&filter_text) {
                draft.general = Some(e.to_string());
                return Ok(Err(draft));
            }
            let store = p.org(&org)?;
            let saved = if replace {
                store.save_segment(&actor, &name, &filter_text, &description)
            } else {
                store.add_segment(&actor, &name, &filter_text, &description)
            };
            match saved {
                Ok(()) => Ok(Ok(())),
                Err(StoreError::Conflict(_)) => {
                    draft.name_error = Some(T::NameTaken.text(lang).to_owned());
                    Ok(Err(draft))
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    if e.status.is_server_error() {
                        return Err(e);
                    }
                    draft.general = Some(e.detail);
                    Ok(Err(draft))
                }
            }
        })
        .await?;
    match outcome {
        Ok(()) => {
            let list = page.href("/customers");
            page.flash(&list, html! { p.notice role="status" { (T::SegmentSaved.text(lang)) } });
            Ok(Redirect::to(&format!("{list}?segment={}", url_escape(&saved_name))).into_response())
        }
        Err(draft) => {
            let q = ListQuery { q: form.filter, ..ListQuery::default() };
            let listing = search(&page, q.q.clone(), String::new(), String::new()).await?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render_list(&page, &q, &listing, None, Some(&draft))).into_response())
        }
    }
}

// ----- the profile -----

#[derive(Deserialize, Default)]
struct ProfileQuery {
    #[serde(default)]
    before: String,
}

struct Full {
    profile: Profile,
    branch_name: Option<String>,
    distributor_name: Option<String>,
    timeline_first: bool,
}

async fn load(page: &OrgPage, id: Id, before: Option<String>) -> Result<Full, PageError> {
    let scope = page.caller.scope();
    let org = page.org.clone();
    page.blocking(move |p| {
        let view = p.view(&org, scope)?;
        let store = view.org();
        let Some(mut profile) = view.profile(id, 20)? else {
            return Err(ApiError::not_found(format!("customer {id} does not exist")));
        };
        let timeline_first = before.is_none();
        if let Some(before) = before {
            let (items, next) = store.timeline(id, Some(&before), 20).map_err(ApiError::from)?;
            profile.timeline = items;
            profile.timeline_next = next;
        }
        let branch_name = match &profile.customer.branch {
            Some(code) => store.branch(code)?.map(|b| b.name),
            None => None,
        };
        let distributor_name = match profile.customer.distributor {
            Some(d) => store.distributor(d)?.map(|d| d.name),
            None => None,
        };
        Ok(Full { profile, branch_name, distributor_name, timeline_first })
    })
    .await
}

async fn profile(
    page: OrgPage,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<ProfileQuery>,
) -> Result<Markup, PageError> {
    let id = customer_id(&page, &id)?;
    let before = (!q.before.is_empty()).then_some(q.before);
    let full = load(&page, id, before).await?;
    Ok(render_profile(&page, &full))
}

fn render_profile(page: &OrgPage, f: &Full) -> Markup {
    let lang = page.lang;
    let t = |x: T| x.text(lang);
    let c = &f.profile.customer;
    let base = page.href(&format!("/customers/{}", c.id));
    let title = c.name.clone().unwrap_or_else(|| format!("{} #{}", t(T::Customer), c.id));
    let body = html! {
        div.row.actions {
            @if page.can(Role::Agent) { a.button href={ (base) "/edit" } { (t(T::Edit)) } }
            @if page.can(Role::Manager) {
                a.button.secondary href={ (base) "/export" } download={ "customer-" (c.id) ".json" } { (t(T::Export)) }
                a.button.secondary href={ (base) "/erase" } { (t(T::Erase)) }
            }
        }
        div.grid2 {
            section {
                dl.facts {
                    dt { (t(T::Id)) } dd { (c.id) }
                    dt { (t(T::Email)) } dd { (c.email.as_deref().unwrap_or("—")) }
                    dt { (t(T::Phone)) } dd { (c.phone.as_deref().unwrap_or("—")) }
                    dt { (t(T::Branch)) } dd {
                        @match (&c.branch, &f.branch_name) {
                            (Some(code), Some(name)) => { (name) " (" (code) ")" }
                            (Some(code), None) => { (code) }
                            _ => { "—" }
                        }
                    }
                    dt { (t(T::Distributor)) } dd {
                        @match (c.distributor, &f.distributor_name) {
                            (Some(id), Some(name)) => { (name) " (#" (id) ")" }
                            (Some(id), None) => { "#" (id) }
                            _ => { "—" }
                        }
                    }
                    dt { (t(T::Tags)) } dd { @if c.tags.is_empty() { "—" } @else { (c.tags.join(", ")) } }
                    dt { (t(T::Segments)) } dd { @if f.profile.segments.is_empty() { "—" } @else { (f.profile.segments.join(", ")) } }
                }
            }
            section {
                h2 { (t(T::Scores)) }
                @if f.profile.scores.is_empty() && f.profile.labels.is_empty() {
                    p.muted { (t(T::NoScores)) }
                } @else {
                    table {
                        thead { tr { th scope="col" { (t(T::Score)) } th.num scope="col" { (t(T::Value)) } th scope="col" { (t(T::Label)) } th scope="col" { (t(T::Why)) } } }
                        tbody {
                            @for key in score_keys(&f.profile) {
                                tr {
                                    td { (key) }
                                    td.num { (f.profile.scores.get(key).map(score_text).unwrap_or_default()) }
                                    td { (f.profile.labels.get(key).and_then(|v| v.as_str()).unwrap_or("")) }
                                    td { (f.profile.explanations.get(key).map(score_text).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { (t(T::Consents)) }
            @if c.consents.is_empty() {
                p.muted { (t(T::NoConsents)) }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (t(T::Purpose)) } th scope="col" { (t(T::Channel)) } th scope="col" { (t(T::Basis)) }
                        th scope="col" { (t(T::Given)) } th scope="col" { (t(T::Withdrawn)) } th scope="col" { (t(T::Source)) }
                    } }
                    tbody {
                        @for k in &c.consents {
                            tr {
                                td { (k.purpose) }
                                td { (k.channel.as_deref().unwrap_or("—")) }
                                td { (serde_json::to_value(k.basis).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) }
                                td { (page.date(k.given_at)) }
                                td { @if let Some(w) = k.withdrawn_at { (page.date(w)) } @else { "—" } }
                                td { (k.source) }
                            }
                        }
                    }
                } }
            }
        }
        section id="timeline" {
            h2 { (t(T::Timeline)) }
            @if f.profile.timeline.is_empty() {
                p.muted { (t(T::NoTimeline)) }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { (t(T::When)) } th scope="col" { (t(T::Kind)) } th scope="col" { (t(T::Channel)) }
                        th scope="col" { (t(T::Subject)) } th.num scope="col" { (t(T::Amount)) } th scope="col" { (t(T::Ticket)) }
                    } }
                    tbody {
                        @for i in &f.profile.timeline {
                            tr {
                                td { (page.datetime(i.occurred_at)) }
                                td { (i.kind.as_str()) }
                                td { (i.channel) }
                                td { (i.subject.as_deref().unwrap_or("")) }
                                td.num { @if let Some(m) = &i.amount { (money(m.amount_minor, &m.currency)) } }
                                td { @if let Some(tk) = &i.ticket {
                                    (serde_json::to_value(tk.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
                                    @if let Some(due) = tk.due_at { " · " (page.date(due)) }
                                } }
                            }
                        }
                    }
                } }
            }
            nav.pager aria-label=(t(T::Timeline)) {
                @if !f.timeline_first { a href={ (base) "#timeline" } { (t(T::Newest)) } }
                @if let Some(next) = &f.profile.timeline_next {
                    a href={ (base) "?before=" (url_escape(next)) "#timeline" } rel="next" { (t(T::Older)) }
                }
            }
        }
        @if page.can(Role::Manager) {
            section {
                h2 { (t(T::Merge)) }
                p.help { (t(T::MergeHelp)) }
                form method="post" action={ (base) "/merge" } {
                    (page.csrf_field())
                    div.row {
                        div { label for="remove" { (t(T::DuplicateId)) } input id="remove" name="remove" inputmode="numeric" required; }
                        button type="submit" { (t(T::MergeButton)) }
                    }
                }
            }
        }
    };
    page.render(Nav::Customers, &title, body)
}

/// Every score and label name, sorted: a scorer may give a label without a number.
fn score_keys(p: &Profile) -> Vec<&String> {
    let mut keys: Vec<&String> = p.scores.keys().chain(p.labels.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn score_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Number(n) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
            Some(x) => format!("{x:.3}"),
            None => n.to_string(),
        },
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ----- edit -----

/// The edit form's fields, as typed.
#[derive(Deserialize, Default, Clone)]
struct EditForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    branch: String,
    #[serde(default)]
    distributor: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    etag: String,
}

const FIELDS: [&str; 6] = ["name", "email", "phone", "branch", "distributor", "tags"];

impl EditForm {
    fn of(c: &Customer) -> EditForm {
        EditForm {
            name: c.name.clone().unwrap_or_default(),
            email: c.email.clone().unwrap_or_default(),
            phone: c.phone.clone().unwrap_or_default(),
            branch: c.branch.clone().unwrap_or_default(),
            distributor: c.distributor.map(|d| d.to_string()).unwrap_or_default(),
            tags: c.tags.join(", "),
            etag: c.etag(),
        }
    }

    fn value(&self, field: &str) -> &str {
        match field {
            "name" => &self.name,
            "email" => &self.email,
            "phone" => &self.phone,
            "branch" => &self.branch,
            "distributor" => &self.distributor,
            "tags" => &self.tags,
            _ => "",
        }
    }

    /// The stored customer with the form's values; a bad number names its field.
    fn apply(&self, mut c: Customer) -> Result<Customer, (String, T)> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        c.name = text(&self.name);
        c.email = text(&self.email);
        c.phone = text(&self.phone);
        c.branch = text(&self.branch);
        c.distributor = match text(&self.distributor) {
            None => None,
            Some(d) => Some(d.parse().map_err(|_| ("distributor".to_owned(), T::NotANumber))?),
        };
        c.tags = self.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        Ok(c)
    }
}

/// What the policies (or the form) said about a submitted edit.
enum Verdict {
    /// A field's problem, shown next to it: (field, message, plugin).
    AtField(String, String, Option<String>),
    /// A problem of the whole form.
    General(String),
}

async fn edit_form(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Markup, PageError> {
    page.require(Role::Agent)?;
    let id = customer_id(&page, &id)?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let c = page.blocking(move |p| visible(p, &org, &scope, id)).await?;
    Ok(render_edit(&page, id, &EditForm::of(&c), None))
}

fn render_edit(page: &OrgPage, id: Id, form: &EditForm, verdict: Option<&Verdict>) -> Markup {
    let lang = page.lang;
    let t = |x: T| x.text(lang);
    let base = page.href(&format!("/customers/{id}"));
    let label = |f: &str| match f {
        "name" => t(T::Name),
        "email" => t(T::Email),
        "phone" => t(T::Phone),
        "branch" => t(T::Branch),
        "distributor" => t(T::Distributor),
        _ => t(T::Tags),
    };
    let at_field = |f: &str| match verdict {
        Some(Verdict::AtField(field, message, plugin)) if field == f => Some((message.clone(), plugin.clone())),
        _ => None,
    };
    let body = html! {
        @if let Some(Verdict::General(message)) = verdict {
            p.error role="alert" { (message) }
        }
        form method="post" action={ (base) "/edit" } novalidate {
            (page.csrf_field())
            input type="hidden" name="etag" value=(form.etag);
            @for f in FIELDS {
                @let problem = at_field(f);
                div.field {
                    label for=(f) { (label(f)) }
                    input id=(f) name=(f) value=(form.value(f))
                        type=(match f { "email" => "email", "phone" => "tel", _ => "text" })
                        inputmode=[(f == "distributor").then_some("numeric")]
                        aria-invalid=[problem.as_ref().map(|_| "true")]
                        aria-describedby=[problem.as_ref().map(|_| format!("{f}-error")).or_else(|| (f == "tags").then(|| "tags-help".to_owned()))];
                    @if f == "tags" { p.help id="tags-help" { (t(T::TagsHelp)) } }
                    @if let Some((message, plugin)) = problem {
                        p.error id={ (f) "-error" } role="alert" {
                            @if let Some(plugin) = plugin { (t(T::DeniedBy)) " " code { (plugin) } ": " }
                            (message)
                        }
                    }
                }
            }
            div.row {
                button type="submit" { (t(T::Save)) }
                a.button.secondary href=(base) { (t(T::Cancel)) }
            }
        }
    };
    page.render(Nav::Customers, t(T::EditTitle), body)
}

async fn edit(
    page: OrgPage,
    Path((_, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<EditForm>,
) -> Result<Response, PageError> {
    let actor = page.require(Role::Agent)?;
    let id = customer_id(&page, &id)?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let lang = page.lang;
    let submitted = form.clone();
    let result = page
        .blocking(move |p| {
            let stored = visible(p, &org, &scope, id)?;
            let mut customer = match submitted.apply(stored) {
                Ok(c) => c,
                Err((field, message)) => return Ok(Err(Verdict::AtField(field, message.text(lang).into(), None))),
            };
            customer.id = id;
            if let Err(e) = place(&scope, &mut customer) {
                return Ok(Err(verdict_of(e.field, e.detail, None)));
            }
            let write = if submitted.etag.is_empty() {
                Write::UpdateCustomer(customer)
            } else {
                Write::UpdateCustomerIfMatch { customer, etag: submitted.etag.clone() }
            };
            match p.write_in(&org, &actor, &scope, Origin::Console, write) {
                Ok(out) => Ok(Ok((out.changed, out.warnings))),
                Err(PipelineError::Denied { plugin, reason, field }) => {
                    Ok(Err(verdict_of(field, reason, Some(plugin))))
                }
                Err(PipelineError::Store(StoreError::Conflict(_))) => {
                    Ok(Err(Verdict::General(T::Stale.text(lang).into())))
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    if e.status.is_server_error() { Err(e) } else { Ok(Err(verdict_of(e.field, e.detail, None))) }
                }
            }
        })
        .await?;
    match result {
        Ok((changed, warnings)) => {
            // To the profile, so that a reload shows it again rather than sending the form again.
            let profile = page.href(&format!("/customers/{id}"));
            page.flash(&profile, saved_notice(&page, changed, &warnings));
            Ok(Redirect::to(&profile).into_response())
        }
        Err(verdict) => {
            Ok((StatusCode::UNPROCESSABLE_ENTITY, render_edit(&page, id, &form, Some(&verdict))).into_response())
        }
    }
}

/// A deny or error placed at the field it names when the form has that field.
fn verdict_of(field: Option<String>, message: String, plugin: Option<String>) -> Verdict {
    match field.map(|f| f.trim_start_matches("customer.").trim_start_matches("after.").to_owned()) {
        Some(f) if FIELDS.contains(&f.as_str()) => Verdict::AtField(f, message, plugin),
        Some(f) if f == "tag" => Verdict::AtField("tags".into(), message, plugin),
        _ => Verdict::General(match plugin {
            Some(p) => format!("{p}: {message}"),
            None => message,
        }),
    }
}

fn saved_notice(page: &OrgPage, changed: bool, warnings: &[Warning]) -> Markup {
    notice(page, if changed { T::Saved } else { T::Unchanged }, warnings)
}

/// What a write did, and the policies' warnings, shown on the page it redirects to.
fn notice(page: &OrgPage, done: T, warnings: &[Warning]) -> Markup {
    let t = |x: T| x.text(page.lang);
    html! {
        p.notice role="status" { (t(done)) }
        @for w in warnings {
            p.warning role="status" { strong { (t(T::Warning)) } " (" code { (w.plugin) } "): " (w.message) }
        }
    }
}

// ----- merge, export, erase -----

#[derive(Deserialize)]
struct MergeForm {
    remove: String,
}

async fn merge(
    page: OrgPage,
    Path((_, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<MergeForm>,
) -> Result<Response, PageError> {
    let actor = page.require(Role::Manager)?;
    let keep = customer_id(&page, &id)?;
    let remove: Id = form.remove.trim().parse().map_err(|_| {
        page.fail(
            ApiError::bad_request(format!("`{}` is not a customer id", form.remove)).with_field(Some("remove".into())),
        )
    })?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let out = page
        .blocking(move |p| {
            visible(p, &org, &scope, remove)?;
            if keep == remove {
                return Err(ApiError::bad_request("a customer cannot be merged into itself"));
            }
            Ok(p.write_in(&org, &actor, &scope, Origin::Merge, Write::MergeCustomers { keep, remove })?)
        })
        .await?;
    let profile = page.href(&format!("/customers/{keep}"));
    page.flash(&profile, notice(&page, T::Merged, &out.warnings));
    Ok(Redirect::to(&profile).into_response())
}

async fn export(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Response, PageError> {
    page.require(Role::Manager)?;
    let id = customer_id(&page, &id)?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let doc = page
        .blocking(move |p| {
            p.view(&org, scope)?.export(id)?.ok_or_else(|| ApiError::not_found(format!("customer {id} does not exist")))
        })
        .await?;
    let body = serde_json::to_string_pretty(&doc).unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"customer-{id}.json\"")),
        ],
        body,
    )
        .into_response())
}

async fn erase_form(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Markup, PageError> {
    page.require(Role::Manager)?;
    let id = customer_id(&page, &id)?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let c = page.blocking(move |p| visible(p, &org, &scope, id)).await?;
    Ok(render_erase(&page, &c, false))
}

fn render_erase(page: &OrgPage, c: &Customer, mismatch: bool) -> Markup {
    let t = |x: T| x.text(page.lang);
    let base = page.href(&format!("/customers/{}", c.id));
    page.render(
        Nav::Customers,
        t(T::EraseTitle),
        html! {
            p.warning role="note" { (t(T::EraseWarning)) }
            p { strong { (c.name.as_deref().unwrap_or("—")) } " (#" (c.id) ")" }
            form method="post" action={ (base) "/erase" } {
                (page.csrf_field())
                label for="confirm" { (t(T::EraseConfirm)) }
                input id="confirm" name="confirm" inputmode="numeric" autocomplete="off" required
                    aria-invalid=[mismatch.then_some("true")] aria-describedby=[mismatch.then_some("confirm-error")];
                @if mismatch { p.error id="confirm-error" role="alert" { (t(T::EraseMismatch)) } }
                div.row {
                    button.danger type="submit" { (t(T::EraseButton)) }
                    a.button.secondary href=(base) { (t(T::Cancel)) }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct EraseForm {
    #[serde(default)]
    confirm: String,
}

async fn erase(
    page: OrgPage,
    Path((_, id)): Path<(String, String)>,
    axum::Form(form): axum::Form<EraseForm>,
) -> Result<Response, PageError> {
    let actor = page.require(Role::Manager)?;
    let id = customer_id(&page, &id)?;
    let scope = page.caller.scope();
    let org = page.org.clone();
    let c = {
        let org = org.clone();
        let scope = scope.clone();
        page.blocking(move |p| visible(p, &org, &scope, id)).await?
    };
    if form.confirm.trim() != id.to_string() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, render_erase(&page, &c, true)).into_response());
    }
    page.blocking(move |p| Ok(p.write_in(&org, &actor, &scope, Origin::Erase, Write::EraseCustomer(id))?)).await?;
    let q = format!("{}?erased={id}", page.href("/customers"));
    Ok(Redirect::to(&q).into_response())
}
