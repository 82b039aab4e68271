//! The reports page: choose an enabled reporter, give its parameters as JSON, see the table and
//! the chart, download the same report as CSV or as a standalone HTML page.
//!
//! A run is a GET (the parameters in the URL), so a report can be bookmarked, and its download
//! links are plain links that run it again in the asked format through the pipeline's
//! `run_report` and `render`, as the API's `/reports/{plugin}/run?format=` does.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde_json::Value;

use super::i18n::{group_thousands, labels};
use super::{L, Nav, OrgPage, PageError, raw, url_escape};
use crate::api::{ApiError, Role, State};
use crate::model::{Cell, ColumnType, Report};
use crate::pipeline::{Format, PipelineError, render};

labels! {
    enum T {
        Intro: "Reporters are plugins that turn the organization's data into a table and a chart.",
            "ตัวรายงานคือปลั๊กอินที่แปลงข้อมูลขององค์กรเป็นตารางและแผนภูมิ";
        NoReporter: "No reporter plugin is enabled. Install one and enable it on the plugins page.",
            "ยังไม่มีปลั๊กอินรายงานที่เปิดใช้งาน ติดตั้งและเปิดใช้งานได้ที่หน้าปลั๊กอิน";
        Reporter: "Reporter", "ตัวรายงาน";
        Params: "Parameters (JSON)", "พารามิเตอร์ (JSON)";
        ParamsHelp: "A JSON object; each reporter documents its own, e.g. {\"filter\": \"branch = \\\"bkk-01\\\"\"}.",
            "JSON object โดยแต่ละตัวรายงานกำหนดพารามิเตอร์ของตนเอง เช่น {\"filter\": \"branch = \\\"bkk-01\\\"\"}";
        Run: "Run the report", "เรียกดูรายงาน";
        NotJson: "The parameters are not JSON:", "พารามิเตอร์ไม่ใช่ JSON:";
        NotObject: "The parameters must be a JSON object, e.g. {}.", "พารามิเตอร์ต้องเป็น JSON object เช่น {}";
        Failed: "The reporter could not make this report:", "ตัวรายงานสร้างรายงานนี้ไม่ได้:";
        Rows: "rows", "แถว";
        DownloadCsv: "Download CSV", "ดาวน์โหลด CSV";
        DownloadHtml: "Download HTML", "ดาวน์โหลด HTML";
        NoRows: "The report has no rows.", "รายงานนี้ไม่มีข้อมูล";
        ShowingFirst: "The page shows the first rows only (the downloads have them all):", "หน้านี้แสดงเฉพาะแถวแรก ๆ (ไฟล์ที่ดาวน์โหลดมีครบทุกแถว):";
    }
}

/// Rows shown on the page; the downloads have them all.
const SHOWN: usize = 1000;

pub(super) fn routes() -> Router<State> {
    Router::new().route("/orgs/{org}/reports", get(show)).route("/orgs/{org}/reports/download", get(download))
}

type Params = Query<HashMap<String, String>>;

/// The enabled reporters' names.
async fn reporters(page: &OrgPage) -> Result<Vec<String>, PageError> {
    let org = page.org.clone();
    page.blocking(move |p| {
        Ok(p.plugins(&org)?.into_iter().filter(|r| r.world == "reporter" && r.enabled).map(|r| r.name).collect())
    })
    .await
}

/// The parameters as the reporter takes them: a JSON object (`{}` when left empty).
fn parse_params(text: &str) -> Result<Value, T> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(T::NotObject),
        Err(_) => Err(T::NotJson),
    }
}

/// Why a run failed, and whether the parameters are to blame (the reporter named them, or
/// they did not parse): the message then sits at the parameters field.
struct Failure {
    message: String,
    at_params: bool,
}

/// `GET /reports`: the form, and with `?plugin=` the report it asks for.
async fn show(page: OrgPage, Query(q): Params) -> Result<Response, PageError> {
    page.require(Role::Manager)?;
    let names = reporters(&page).await?;
    let chosen = q.get("plugin").cloned();
    let params_text = q.get("params").cloned().unwrap_or_else(|| "{}".into());
    let (report, failure) = match &chosen {
        None => (None, None),
        Some(plugin) => match run(&page, plugin.clone(), &params_text).await? {
            Ok(r) => (Some(r), None),
            Err(f) => (None, Some(f)),
        },
    };
    let status = match (&chosen, &failure) {
        (Some(_), Some(_)) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    let body = view(&page, &names, chosen.as_deref(), &params_text, report.as_ref(), failure.as_ref());
    Ok((status, page.render(Nav::Reports, page.t(L::Reports), body)).into_response())
}

/// Run the reporter; an unknown one is the 404 page, a refusal a [`Failure`] to show.
async fn run(page: &OrgPage, plugin: String, params_text: &str) -> Result<Result<Report, Failure>, PageError> {
    let params = match parse_params(params_text) {
        Ok(p) => p,
        Err(e) => {
            let detail = serde_json::from_str::<Value>(params_text).err().map(|e| format!(" {e}")).unwrap_or_default();
            return Ok(Err(Failure { message: format!("{}{detail}", e.text(page.lang)), at_params: true }));
        }
    };
    let org = page.org.clone();
    let result = page.blocking(move |p| Ok(p.run_report(&org, &plugin, &params))).await?;
    match result {
        Ok(report) => Ok(Ok(report)),
        Err(PipelineError::NotFound(m)) => Err(page.fail(ApiError::not_found(m))),
        Err(e) => {
            let message = e.to_string();
            // A reporter refuses its parameters with the field `params` (see the examples).
            let at_params = message.contains("params");
            Ok(Err(Failure { message: format!("{} {message}", T::Failed.text(page.lang)), at_params }))
        }
    }
}

fn view(
    page: &OrgPage,
    names: &[String],
    chosen: Option<&str>,
    params_text: &str,
    report: Option<&Report>,
    failure: Option<&Failure>,
) -> Markup {
    let t = |l: T| l.text(page.lang);
    let params_error = failure.filter(|f| f.at_params);
    html! {
        p.help { (t(T::Intro)) }
        @if names.is_empty() {
            p.muted { (t(T::NoReporter)) " " a href=(page.href("/plugins")) { (page.t(L::Plugins)) } }
        } @else {
            form method="get" action=(page.href("/reports")) id="report-form" {
                label for="report-plugin" { (t(T::Reporter)) }
                select id="report-plugin" name="plugin" {
                    @for n in names { option value=(n) selected[chosen == Some(n.as_str())] { (n) } }
                }
                label for="report-params" { (t(T::Params)) }
                textarea id="report-params" name="params" rows="3" spellcheck="false"
                    aria-invalid=[params_error.map(|_| "true")]
                    aria-describedby=(if params_error.is_some() { "report-params-error" } else { "report-params-help" }) { (params_text) }
                @if let Some(f) = params_error { p.error id="report-params-error" role="alert" { (f.message) } }
                p.help id="report-params-help" { (t(T::ParamsHelp)) }
                button type="submit" { (t(T::Run)) }
            }
        }
        @if let Some(f) = failure.filter(|f| !f.at_params) { p.error role="alert" { (f.message) } }
        @if let (Some(report), Some(plugin)) = (report, chosen) {
            (report_view(page, plugin, params_text, report))
        }
    }
}

fn download_href(page: &OrgPage, plugin: &str, params: &str, format: &str) -> String {
    format!(
        "{}?plugin={}&params={}&format={format}",
        page.href("/reports/download"),
        url_escape(plugin),
        url_escape(params)
    )
}

fn report_view(page: &OrgPage, plugin: &str, params: &str, report: &Report) -> Markup {
    let t = |l: T| l.text(page.lang);
    html! {
        section id="report" aria-labelledby="report-title" {
            h2 id="report-title" { (report.title.as_deref().unwrap_or(plugin)) }
            p {
                a.button.secondary id="download-csv" href=(download_href(page, plugin, params, "csv")) download { (t(T::DownloadCsv)) }
                " "
                a.button.secondary id="download-html" href=(download_href(page, plugin, params, "html")) download { (t(T::DownloadHtml)) }
            }
            @if let Some(svg) = chart(report) {
                div.chart.table-wrap { (raw(svg)) }
            }
            @if report.rows.is_empty() {
                p.muted { (t(T::NoRows)) }
            } @else {
                p.muted { (group_thousands(report.rows.len() as u64)) " " (t(T::Rows)) }
                @if report.rows.len() > SHOWN {
                    p.warning { (t(T::ShowingFirst)) " " (group_thousands(SHOWN as u64)) }
                }
                div.table-wrap {
                    table id="report-table" {
                        thead { tr { @for c in &report.columns {
                            th.num[numeric(c.ty)] scope="col" { (c.name) }
                        } } }
                        tbody {
                            @for row in report.rows.iter().take(SHOWN) {
                                tr { @for (cell, c) in row.iter().zip(&report.columns) {
                                    td.num[numeric(c.ty)] { (cell_text(page, cell, c.ty)) }
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn numeric(ty: ColumnType) -> bool {
    matches!(ty, ColumnType::Integer | ColumnType::Number | ColumnType::Money)
}

/// A cell for a person: numbers grouped, times in the reader's calendar. (The CSV download keeps
/// the machine form.)
fn cell_text(page: &OrgPage, cell: &Cell, ty: ColumnType) -> String {
    match (cell, ty) {
        (Cell::Null, _) => String::new(),
        (Cell::Integer(ms), ColumnType::Timestamp) => page.datetime(*ms),
        (Cell::Integer(i), _) => {
            let grouped = group_thousands(i.unsigned_abs());
            if *i < 0 { format!("-{grouped}") } else { grouped }
        }
        (Cell::Number(n), _) => {
            let rounded = format!("{:.2}", n);
            rounded.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
        (Cell::Boolean(b), _) => b.to_string(),
        (Cell::Text(s), _) => s.clone(),
    }
}

/// The chart the pipeline draws for the HTML rendering (inline SVG from escaped labels and
/// numbers), taken from that page so that the console and the download show the same drawing.
fn chart(report: &Report) -> Option<String> {
    let (_, html) = render(report, Format::Html);
    let start = html.find("<svg")?;
    let end = html[start..].find("</svg>")? + start + "</svg>".len();
    Some(html[start..end].to_owned())
}

/// `GET /reports/download?plugin=&params=&format=csv|html`: the report as a file.
async fn download(page: OrgPage, Query(q): Params) -> Result<Response, PageError> {
    page.require(Role::Manager)?;
    let plugin = q.get("plugin").cloned().unwrap_or_default();
    let format = match q.get("format").map(String::as_str) {
        Some("csv") => Format::Csv,
        Some("html") => Format::Html,
        Some("json") => Format::Json,
        other => {
            return Err(page.fail(ApiError::bad_request(format!("unknown report format {other:?}: use csv or html"))));
        }
    };
    let params_text = q.get("params").cloned().unwrap_or_default();
    match run(&page, plugin.clone(), &params_text).await? {
        Err(f) => Err(page.fail(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Report failed", f.message))),
        Ok(report) => {
            let (content_type, body) = render(&report, format);
            let extension = match format {
                Format::Csv => "csv",
                Format::Html => "html",
                Format::Json => "json",
            };
            let disposition = format!("attachment; filename=\"{plugin}.{extension}\"");
            Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Chart, ChartKind, ReportColumn};

    #[test]
    fn the_chart_is_the_svg_of_the_html_rendering() {
        let report = Report {
            title: Some("By branch".into()),
            columns: vec![
                ReportColumn { name: "branch".into(), ty: ColumnType::Text },
                ReportColumn { name: "customers".into(), ty: ColumnType::Integer },
            ],
            rows: vec![vec![Cell::Text("<b>".into()), Cell::Integer(3)]],
            chart: Some(Chart { kind: ChartKind::Bar, title: None, x: "branch".into(), y: vec!["customers".into()] }),
        };
        let svg = chart(&report).expect("a bar chart");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"), "labels stay escaped: {svg}");
        assert_eq!(chart(&Report { chart: None, ..report }), None);
    }

    #[test]
    fn parameters_must_be_a_json_object() {
        assert_eq!(parse_params("  ").unwrap(), serde_json::json!({}));
        assert!(matches!(parse_params("[1]"), Err(T::NotObject)));
        assert!(matches!(parse_params("{tag: 1}"), Err(T::NotJson)));
        assert_eq!(parse_params(r#"{"tag":"vip"}"#).unwrap(), serde_json::json!({"tag": "vip"}));
    }
}
