//! Reports: run a reporter plugin with parameters and render what it returns as JSON, CSV, or a
//! standalone HTML page with its chart drawn as inline SVG (no scripts, no external requests: the
//! page can be mailed or archived as it is).
//!
//! The SVG is written by hand: a bar, line or pie chart of one report needs a few dozen lines, and
//! the charting crates either pull a font stack (plotters) or produce JavaScript.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use super::{Pipeline, PipelineError, Result};
use crate::model::{Cell, ChartKind, ColumnType, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "html" => Ok(Format::Html),
            other => Err(format!("unknown report format `{other}`: use json, csv or html")),
        }
    }
}

impl Pipeline {
    /// Run an enabled reporter with `params`.
    ///
    /// # Errors
    /// `NotFound` when no enabled reporter has that name; `Plugin` when the call fails (trap,
    /// limit, refused input) or returns rows or a chart that do not fit its columns; `NotFound` or
    /// `Plugin` when one of the organization's enabled plugins cannot be loaded; the organization
    /// does not exist, or a database failure (`Store`).
    pub fn run_report(&self, org: &str, name: &str, params: &Value) -> Result<Report> {
        let store = self.org(org)?;
        let plugins = self.plugins_of(&store)?;
        let active = plugins.reporters.iter().find(|a| a.row.name == name).ok_or_else(|| {
            PipelineError::NotFound(format!("no enabled reporter plugin `{name}` (install and enable it first)"))
        })?;
        let data: Arc<dyn crate::plugins::DataSource> = Arc::new(store.clone());
        let ctx = active.context(&data, &self.settings().reporter_limits);
        let result = active.plugin.run_report(&ctx, params);
        let mut trace = active.callee().outcome("report", &result);
        let out = match result {
            Ok(c) => {
                trace.summary = Some(format!("{} rows", c.value.rows.len()));
                check(c.value)
            }
            Err(e) => Err(PipelineError::Plugin(e.to_string())),
        };
        store.write(|tx| tx.record_traces(std::slice::from_ref(&trace)))?;
        out
    }
}

/// A report whose rows do not fit its columns is the plugin's bug: say which row.
fn check(report: Report) -> Result<Report> {
    let width = report.columns.len();
    if let Some((i, row)) = report.rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(PipelineError::Plugin(format!(
            "the reporter returned row {} with {} cells for {width} columns",
            i + 1,
            row.len()
        )));
    }
    if let Some(chart) = &report.chart {
        for c in std::iter::once(&chart.x).chain(&chart.y) {
            if !report.columns.iter().any(|col| &col.name == c) {
                return Err(PipelineError::Plugin(format!(
                    "the reporter's chart names a column `{c}` it does not have"
                )));
            }
        }
    }
    Ok(report)
}

/// Render a report in a format: (content type, body).
pub fn render(report: &Report, format: Format) -> (&'static str, String) {
    match format {
        Format::Json => ("application/json", serde_json::to_string(report).expect("a report serializes")),
        Format::Csv => ("text/csv; charset=utf-8", csv(report)),
        Format::Html => ("text/html; charset=utf-8", html(report)),
    }
}

fn cell_text(cell: &Cell, ty: ColumnType) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Boolean(b) => b.to_string(),
        Cell::Integer(i) if ty == ColumnType::Timestamp => {
            time::OffsetDateTime::from_unix_timestamp_nanos(*i as i128 * 1_000_000)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| i.to_string())
        }
        Cell::Integer(i) => i.to_string(),
        Cell::Number(n) => n.to_string(),
        Cell::Text(t) => t.clone(),
    }
}

fn csv(report: &Report) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(report.columns.iter().map(|c| c.name.as_str())).expect("writing to memory");
    for row in &report.rows {
        w.write_record(row.iter().zip(&report.columns).map(|(cell, col)| match cell {
            Cell::Text(t) => spreadsheet_safe(t).into_owned(),
            other => cell_text(other, col.ty),
        }))
        .expect("writing to memory");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV of UTF-8 strings")
}

/// A text cell as a spreadsheet will not run it: text that starts like a formula (`=`, `+`, `-`,
/// `@`, a tab or a carriage return) gets a leading `'`. Names and notes come from imports and
/// agents, and CSV exports are opened in spreadsheets (OWASP's "CSV injection").
pub(crate) fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(report: &Report) -> String {
    let title = escape(report.title.as_deref().unwrap_or("Report"));
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}\
         th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}td.n{{text-align:right}}\
         </style></head><body><h1>{title}</h1>\n"
    );
    if let Some(svg) = chart_svg(report) {
        out.push_str(&svg);
        out.push('\n');
    }
    out.push_str("<table><thead><tr>");
    for c in &report.columns {
        let _ = write!(out, "<th>{}</th>", escape(&c.name));
    }
    out.push_str("</tr></thead><tbody>\n");
    for row in &report.rows {
        out.push_str("<tr>");
        for (cell, col) in row.iter().zip(&report.columns) {
            let numeric = matches!(col.ty, ColumnType::Integer | ColumnType::Number | ColumnType::Money);
            let class = if numeric { " class=\"n\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(&cell_text(cell, col.ty)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}

/// The most nodes a tree chart draws; the table below it holds every row.
const TREE_NODES: usize = 400;

/// A tree chart as an indented tree (the layout of a file browser): each node on its own line
/// under its parent, joined by elbow connectors, with the other `y` columns' values beside its
/// name. Chosen over a top-down tidy tree because sponsor trees are wide (hundreds of recruits
/// under one sponsor) and shallow, and an indented tree stays readable at any width. `x` names
/// the node; the first `y` column names its parent's node (empty or unknown: a root).
fn tree_svg(report: &Report, title: Option<&str>, x: usize, ys: &[usize]) -> String {
    let text = |row: &[Cell], c: usize| cell_text(&row[c], report.columns[c].ty);
    let names: Vec<String> = report.rows.iter().map(|r| text(r, x)).collect();
    let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    let mut roots = Vec::new();
    for (i, row) in report.rows.iter().enumerate() {
        match index.get(text(row, ys[0]).as_str()) {
            Some(&parent) if parent != i && !matches!(row[ys[0]], Cell::Null) => children[parent].push(i),
            _ => roots.push(i),
        }
    }
    // Depth-first, in row order; a node is placed once even if the parents form a cycle.
    let mut order: Vec<(usize, usize, Option<usize>)> = Vec::new(); // (row, depth, parent's line)
    let mut placed = vec![false; names.len()];
    let mut stack: Vec<(usize, usize, Option<usize>)> = roots.iter().rev().map(|&r| (r, 0, None)).collect();
    while let Some((node, depth, parent_line)) = stack.pop() {
        if placed[node] || order.len() == TREE_NODES {
            continue;
        }
        placed[node] = true;
        let line = order.len();
        order.push((node, depth, parent_line));
        stack.extend(children[node].iter().rev().map(|&c| (c, depth + 1, Some(line))));
    }
    let (row_h, indent, top) = (20.0, 18.0, if title.is_some() { 40.0 } else { 16.0 });
    let depth = order.iter().map(|&(_, d, _)| d).max().unwrap_or(0);
    let w = (depth as f64 * indent + 480.0).max(480.0);
    let h = top + order.len() as f64 * row_h + 16.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{}\">",
        escape(title.unwrap_or(&report.columns[x].name))
    );
    if let Some(t) = title {
        let _ = write!(svg, "<text x=\"8\" y=\"20\" font-size=\"16\">{}</text>", escape(t));
    }
    let at = |line: usize, depth: usize| (12.0 + depth as f64 * indent, top + line as f64 * row_h);
    for (line, &(node, depth, parent_line)) in order.iter().enumerate() {
        let (nx, ny) = at(line, depth);
        if let Some(p) = parent_line {
            let (px, py) = at(p, depth - 1);
            let _ = write!(
                svg,
                "<path d=\"M{px:.1},{:.1} V{ny:.1} H{:.1}\" fill=\"none\" stroke=\"#999\"/>",
                py + 4.0,
                nx - 4.0
            );
        }
        let values: Vec<String> =
            ys[1..].iter().map(|&c| format!("{}: {}", report.columns[c].name, text(&report.rows[node], c))).collect();
        let _ = write!(
            svg,
            "<circle cx=\"{nx:.1}\" cy=\"{ny:.1}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}\
             <tspan fill=\"#555\">{}</tspan></text>",
            PALETTE[depth % PALETTE.len()],
            nx + 8.0,
            ny + 4.0,
            escape(&names[node]),
            escape(&if values.is_empty() { String::new() } else { format!("  {}", values.join(", ")) })
        );
    }
    if order.len() < names.len() {
        let _ = write!(
            svg,
            "<text x=\"8\" y=\"{:.1}\" font-size=\"12\" fill=\"#555\">… the first {} of {} nodes; the table has them all</text>",
            h - 4.0,
            order.len(),
            names.len()
        );
    }
    svg.push_str("</svg>");
    svg
}

const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948"];

fn number(cell: &Cell) -> Option<f64> {
    match cell {
        Cell::Integer(i) => Some(*i as f64),
        Cell::Number(n) if n.is_finite() => Some(*n),
        _ => None,
    }
}

/// The chart as an SVG element; `None` when there is none.
fn chart_svg(report: &Report) -> Option<String> {
    let chart = report.chart.as_ref()?;
    let col = |name: &str| report.columns.iter().position(|c| c.name == name);
    let x = col(&chart.x)?;
    let ys: Vec<usize> = chart.y.iter().filter_map(|y| col(y)).collect();
    if ys.is_empty() || report.rows.is_empty() {
        return None;
    }
    if chart.kind == ChartKind::Tree {
        return Some(tree_svg(report, chart.title.as_deref(), x, &ys));
    }
    let labels: Vec<String> = report.rows.iter().map(|r| cell_text(&r[x], report.columns[x].ty)).collect();
    let series: Vec<Vec<f64>> =
        ys.iter().map(|&y| report.rows.iter().map(|r| number(&r[y]).unwrap_or(0.0)).collect()).collect();
    let (w, h, pad) = (720.0, 360.0, 48.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"{}\">",
        escape(chart.title.as_deref().unwrap_or(&chart.x))
    );
    if let Some(t) = &chart.title {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"16\">{}</text>",
            w / 2.0,
            escape(t)
        );
    }
    match chart.kind {
        ChartKind::Pie => {
            let values = &series[0];
            let total: f64 = values.iter().map(|v| v.max(0.0)).sum();
            if total <= 0.0 {
                return None;
            }
            let (cx, cy, r) = (h / 2.0, h / 2.0 + 10.0, h / 2.0 - 40.0);
            let mut angle = -std::f64::consts::FRAC_PI_2;
            for (i, v) in values.iter().enumerate() {
                let sweep = v.max(0.0) / total * std::f64::consts::TAU;
                let (x0, y0) = (cx + r * angle.cos(), cy + r * angle.sin());
                angle += sweep;
                let (x1, y1) = (cx + r * angle.cos(), cy + r * angle.sin());
                let large = if sweep > std::f64::consts::PI { 1 } else { 0 };
                let color = PALETTE[i % PALETTE.len()];
                if sweep >= std::f64::consts::TAU - 1e-9 {
                    let _ = write!(svg, "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"{color}\"/>");
                } else {
                    let _ = write!(
                        svg,
                        "<path d=\"M{cx:.1},{cy:.1} L{x0:.1},{y0:.1} A{r:.1},{r:.1} 0 {large} 1 {x1:.1},{y1:.1} Z\" fill=\"{color}\"><title>{}: {v}</title></path>",
                        escape(&labels[i])
                    );
                }
                let _ = write!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
                    h + 20.0,
                    40.0 + i as f64 * 18.0,
                    h + 36.0,
                    49.0 + i as f64 * 18.0,
                    escape(&labels[i])
                );
            }
        }
        ChartKind::Tree => unreachable!("drawn by tree_svg"),
        ChartKind::Bar | ChartKind::Line => {
            let max = series.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
            let min = series.iter().flatten().fold(0.0_f64, |m, v| m.min(*v));
            let span = if max - min > 0.0 { max - min } else { 1.0 };
            let (plot_w, plot_h) = (w - 2.0 * pad, h - 2.0 * pad);
            let y_of = |v: f64| pad + plot_h - (v - min) / span * plot_h;
            let n = labels.len() as f64;
            let step = plot_w / n;
            let _ = write!(
                svg,
                "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/><text x=\"4\" y=\"{2}\" font-size=\"11\">{max}</text>\
                 <text x=\"4\" y=\"{3}\" font-size=\"11\">{min}</text>",
                y_of(0.0),
                w - pad,
                pad + 4.0,
                pad + plot_h
            );
            for (i, label) in labels.iter().enumerate() {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
                    pad + step * (i as f64 + 0.5),
                    h - pad / 2.0,
                    escape(label)
                );
            }
            for (k, values) in series.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                if chart.kind == ChartKind::Line {
                    let points: Vec<String> = values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| format!("{:.1},{:.1}", pad + step * (i as f64 + 0.5), y_of(*v)))
                        .collect();
                    let _ = write!(
                        svg,
                        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                        points.join(" ")
                    );
                } else {
                    let bar = step * 0.8 / series.len() as f64;
                    for (i, v) in values.iter().enumerate() {
                        let x0 = pad + step * i as f64 + step * 0.1 + bar * k as f64;
                        let (top, bottom) = (y_of(v.max(0.0)), y_of(v.min(0.0)));
                        let _ = write!(
                            svg,
                            "<rect x=\"{x0:.1}\" y=\"{top:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {v}</title></rect>",
                            (bottom - top).max(0.5),
                            escape(&labels[i])
                        );
                    }
                }
            }
        }
    }
    svg.push_str("</svg>");
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Chart, ReportColumn};

    fn tree(rows: &[(&str, Option<&str>, i64)]) -> Report {
        let column = |name: &str, ty| ReportColumn { name: name.into(), ty };
        Report {
            title: None,
            columns: vec![
                column("node", ColumnType::Text),
                column("parent", ColumnType::Text),
                column("volume", ColumnType::Integer),
            ],
            rows: rows
                .iter()
                .map(|(n, p, v)| {
                    vec![Cell::Text((*n).into()), p.map_or(Cell::Null, |p| Cell::Text(p.into())), Cell::Integer(*v)]
                })
                .collect(),
            chart: Some(Chart {
                kind: ChartKind::Tree,
                title: Some("Sponsors".into()),
                x: "node".into(),
                y: vec!["parent".into(), "volume".into()],
            }),
        }
    }

    /// Nodes are drawn depth first under their parent, one connector per child, with the other
    /// columns' values beside the name — a tree, not bars.
    #[test]
    fn a_tree_chart_draws_each_node_under_its_parent() {
        // Rows out of tree order: the child of `b` comes before `b`.
        let report =
            tree(&[("root", None, 10), ("b-child", Some("b"), 1), ("a", Some("root"), 3), ("b", Some("root"), 5)]);
        let svg = chart_svg(&report).unwrap();
        assert!(!svg.contains("<rect"), "no bars: {svg}");
        assert_eq!(svg.matches("<circle").count(), 4, "{svg}");
        assert_eq!(svg.matches("<path").count(), 3, "one connector per non-root: {svg}");
        let line = |name: &str| svg.find(&format!(">{name}<")).unwrap_or_else(|| panic!("{name} in {svg}"));
        assert!(line("root") < line("b") && line("b") < line("b-child"), "depth first: {svg}");
        assert!(svg.contains("volume: 5"), "values beside the name: {svg}");
    }

    /// A formula typed into a name is exported as text; numbers stay numbers.
    #[test]
    fn csv_cells_that_look_like_formulas_are_exported_as_text() {
        let report = tree(&[("=HYPERLINK(\"http://x\")", None, -5), ("@SUM(A1)", None, 1), ("Ann", None, 2)]);
        let text = csv(&report);
        assert!(text.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{text}");
        assert!(text.contains("'@SUM(A1)"), "{text}");
        assert!(text.contains("Ann,,2"), "{text}");
        assert!(text.contains(",-5"), "a negative number stays a number: {text}");
    }

    /// A parent cycle or a missing parent never loops or loses the table: unreachable nodes are
    /// left out of the picture and said to be.
    #[test]
    fn a_tree_with_a_cycle_or_an_unknown_parent_still_draws() {
        let report = tree(&[("x", Some("y"), 1), ("y", Some("x"), 1), ("orphan", Some("gone"), 2)]);
        let svg = chart_svg(&report).unwrap();
        assert_eq!(svg.matches("<circle").count(), 1, "only the orphan is a root: {svg}");
        assert!(svg.contains("the first 1 of 3 nodes"), "{svg}");
    }
}
