//! The dashboard: what the organization holds (inside the caller's scope), open tickets per
//! branch, segment sizes with a chart, and — for owners, who may read plugin traces over the
//! API too — the latest policy denials and warnings.

use axum::Router;
use axum::routing::get;
use maud::{Markup, html};

use super::i18n::{group_thousands, labels};
use super::{Nav, OrgPage, PageError};
use crate::api::{ApiError, Role, State};
use crate::model::{AggregateOp, AggregateQuery, Aggregation, Timestamp};
use crate::pipeline::Pipeline;
use crate::store::{OrgStore, TraceRecord};

labels! {
    enum T {
        Customers: "Customers", "ลูกค้า";
        ActiveWeek: "Customers with an interaction in the last 7 days", "ลูกค้าที่มีการติดต่อใน 7 วันที่ผ่านมา";
        Interactions: "Interactions in the last 7 days", "การติดต่อใน 7 วันที่ผ่านมา";
        OpenTickets: "Open and overdue tickets per branch", "ตั๋วที่เปิดอยู่และเกินกำหนดตามสาขา";
        NoBranch: "(no branch)", "(ไม่มีสาขา)";
        Segments: "Segments", "กลุ่มลูกค้า";
        NoSegments: "No saved segments yet: save a search on the customers page.",
            "ยังไม่มีกลุ่มลูกค้าที่บันทึกไว้ บันทึกการค้นหาได้ที่หน้าลูกค้า";
        Size: "Customers", "จำนวนลูกค้า";
        Decisions: "Latest policy denials and warnings", "การปฏิเสธและคำเตือนล่าสุดจากนโยบาย";
        NoDecisions: "No denials or warnings recorded.", "ไม่มีการปฏิเสธหรือคำเตือน";
        When: "When", "เวลา";
        Plugin: "Plugin", "ปลั๊กอิน";
        Outcome: "Decision", "ผลการตัดสิน";
        Customer: "Customer", "ลูกค้า";
        Reason: "Reason", "เหตุผล";
        Deny: "denied", "ปฏิเสธ";
        Warn: "warning", "คำเตือน";
        Branch: "Branch", "สาขา";
        Open: "Open", "เปิดอยู่";
        Overdue: "Overdue", "เกินกำหนด";
    }
}

pub(super) fn routes() -> Router<State> {
    Router::new().route("/orgs/{org}", get(show))
}

struct Data {
    customers: u64,
    active_week: u64,
    interactions: u64,
    /// Per branch: open tickets, and those of them past their due time.
    tickets: Vec<(Option<String>, u64, u64)>,
    segments: Vec<(String, String, u64)>,
    decisions: Option<Vec<TraceRecord>>,
}

async fn show(page: OrgPage) -> Result<Markup, PageError> {
    let scope = page.caller.scope();
    let owner = page.can(Role::Owner);
    let org = page.org.clone();
    let now = crate::store::now_ms();
    let data = page
        .blocking(move |p| {
            let view = p.view(&org, scope)?;
            let store = view.org();
            let week_ago =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now - 7 * 86_400_000) * 1_000_000)
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .date();
            let customers = view.count_customers("")?;
            let active_week = view.count_customers(&format!("interactions.last >= {week_ago}"))?;
            let sums = view.aggregate(&AggregateQuery {
                filter: String::new(),
                group_by: vec!["branch".into()],
                aggregations: vec![
                    Aggregation { op: AggregateOp::Sum, field: Some("tickets.open".into()) },
                    Aggregation { op: AggregateOp::Sum, field: Some("tickets.overdue".into()) },
                ],
                limit: 200,
            })?;
            let column = |i: usize| -> Vec<f64> { sums.values.get(i).map(|c| c.values.clone()).unwrap_or_default() };
            let (open, overdue) = (column(0), column(1));
            let branches = sums.keys.first().map(|k| k.values.clone()).unwrap_or_default();
            let tickets: Vec<(Option<String>, u64, u64)> = branches
                .into_iter()
                .zip(open.iter().zip(&overdue))
                .map(|(b, (n, late))| (b, *n as u64, *late as u64))
                .filter(|(_, n, _)| *n > 0)
                .collect();
            let interactions = view.count_interactions_since("", now - 7 * 86_400_000)?;
            let mut segments = Vec::new();
            for s in store.segments()? {
                let size = view.count_customers(&s.filter).unwrap_or(0);
                segments.push((s.name, s.description, size));
            }
            let decisions = if owner { Some(latest_decisions(p, &org, store, 10)?) } else { None };
            Ok(Data { customers, active_week, interactions, tickets, segments, decisions })
        })
        .await?;
    Ok(render(&page, &data))
}

/// The newest `deny` and `warn` outcomes across the organization's policies.
fn latest_decisions(p: &Pipeline, org: &str, store: &OrgStore, n: usize) -> Result<Vec<TraceRecord>, ApiError> {
    let mut all = Vec::new();
    for plugin in store.plugins()?.iter().filter(|p| p.world == "policy") {
        // Through the pipeline: it writes the traces it still buffers first.
        let traces = p.traces(org, &plugin.name, None, 200)?;
        all.extend(traces.into_iter().filter(|t| t.outcome == "deny" || t.outcome == "warn").take(n));
    }
    all.sort_by_key(|t| std::cmp::Reverse(t.at));
    all.truncate(n);
    Ok(all)
}

fn render(page: &OrgPage, d: &Data) -> Markup {
    let lang = page.lang;
    let t = |l: T| l.text(lang);
    let body = html! {
        section.cards aria-label=(t(T::Customers)) {
            div.card { div.muted { (t(T::Customers)) } div.big { (group_thousands(d.customers)) } }
            div.card { div.muted { (t(T::ActiveWeek)) } div.big { (group_thousands(d.active_week)) } }
            div.card { div.muted { (t(T::Interactions)) } div.big { (group_thousands(d.interactions)) } }
        }
        div.grid2 {
            section {
                h2 { (t(T::OpenTickets)) }
                table {
                    thead { tr {
                        th scope="col" { (t(T::Branch)) } th.num scope="col" { (t(T::Open)) }
                        th.num scope="col" { (t(T::Overdue)) }
                    } }
                    tbody {
                        @for (branch, n, late) in &d.tickets {
                            tr {
                                td { (branch.as_deref().unwrap_or(t(T::NoBranch))) }
                                td.num { (group_thousands(*n)) }
                                td.num { @if *late > 0 { span.error { (group_thousands(*late)) } } @else { "0" } }
                            }
                        }
                    }
                }
            }
            section {
                h2 { (t(T::Segments)) }
                @if d.segments.is_empty() {
                    p.muted { (t(T::NoSegments)) }
                } @else {
                    (chart(&d.segments, t(T::Segments)))
                    table {
                        thead { tr { th scope="col" { (t(T::Segments)) } th.num scope="col" { (t(T::Size)) } } }
                        tbody {
                            @for (name, description, size) in &d.segments {
                                tr {
                                    td {
                                        a href=(page.href(&format!("/customers?segment={}", super::url_escape(name)))) { (name) }
                                        @if !description.is_empty() { br; span.muted { (description) } }
                                    }
                                    td.num { (group_thousands(*size)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(decisions) = &d.decisions {
            section {
                h2 { (t(T::Decisions)) }
                @if decisions.is_empty() {
                    p.muted { (t(T::NoDecisions)) }
                } @else {
                    div.table-wrap { table {
                        thead { tr {
                            th scope="col" { (t(T::When)) } th scope="col" { (t(T::Plugin)) }
                            th scope="col" { (t(T::Outcome)) } th scope="col" { (t(T::Customer)) }
                            th scope="col" { (t(T::Reason)) }
                        } }
                        tbody {
                            @for tr in decisions {
                                tr {
                                    td { (page.datetime(tr.at as Timestamp)) }
                                    td { (tr.plugin) }
                                    td { @if tr.outcome == "deny" { span.error { (t(T::Deny)) } } @else { span.warning { (t(T::Warn)) } } }
                                    td { @if let Some(c) = tr.customer { a href=(page.href(&format!("/customers/{c}"))) { "#" (c) } } }
                                    td { (tr.summary.as_deref().or(tr.error.as_deref()).unwrap_or("")) }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    page.render(Nav::Dashboard, super::L::Dashboard.text(lang), body)
}

/// Segment sizes as horizontal bars: inline SVG (no script, no chart library), with the numbers
/// also in the table beside it for screen readers.
fn chart(rows: &[(String, String, u64)], title: &str) -> Markup {
    let max = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1) as f64;
    let bar_h = 22;
    let height = rows.len() as i64 * bar_h + 4;
    html! {
        svg role="img" aria-label=(title) viewBox={ "0 0 400 " (height) } width="100%" preserveAspectRatio="xMinYMin meet" {
            @for (i, (name, _, size)) in rows.iter().enumerate() {
                @let y = i as i64 * bar_h + 2;
                @let w = (*size as f64 / max * 250.0).max(1.0);
                text x="0" y=(y + 15) font-size="12" { (name) }
                rect.bar x="120" y=(y) width=(format!("{w:.1}")) height=(bar_h - 6) {}
                text x=(format!("{:.1}", 124.0 + w)) y=(y + 15) font-size="12" { (group_thousands(*size)) }
            }
        }
    }
}
