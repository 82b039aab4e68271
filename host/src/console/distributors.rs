//! The distributors page: the sponsor tree, browsed one level at a time from the top sponsors
//! down, each distributor with their own customers and purchase volume and their downline's
//! (everyone below them) size and volume.
//!
//! The numbers come from two reads: every distributor (paged through the store) and one
//! `aggregate` of customers grouped by distributor (the same query plugins make), restricted to
//! the caller's row-level scope so that an agent's page sums only the customers they may see.
//! The tree is then summed bottom-up in memory: one pass, however deep the network.

use std::collections::HashMap;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use maud::{Markup, html};

use super::i18n::{group_thousands, labels};
use super::{L, Nav, OrgPage, PageError};
use crate::api::{ApiError, Role, State};
use crate::model::{AggregateOp, AggregateQuery, Aggregation, Distributor, DistributorStatus, Id};

labels! {
    enum T {
        Intro: "The sponsor tree: who recruited whom. Volume is the purchases of a distributor's customers; the downline is everyone below them.",
            "สายงานผู้แนะนำ: ใครแนะนำใคร ยอดขายคือยอดซื้อของลูกค้าของผู้จัดจำหน่าย ดาวน์ไลน์คือทุกคนที่อยู่ใต้สายงาน";
        TopLevel: "Top of the tree", "ระดับบนสุดของสายงาน";
        Recruits: "Direct recruits", "ผู้ที่แนะนำโดยตรง";
        NoRecruits: "No one was recruited by this distributor.", "ผู้จัดจำหน่ายรายนี้ยังไม่ได้แนะนำใคร";
        None: "The organization has no distributors yet; import them on the import page.",
            "องค์กรยังไม่มีผู้จัดจำหน่าย นำเข้าได้ที่หน้านำเข้าข้อมูล";
        Name: "Name", "ชื่อ";
        Rank: "Rank", "ตำแหน่ง";
        Status: "Status", "สถานะ";
        Active: "active", "ใช้งาน";
        Inactive: "inactive", "ไม่ใช้งาน";
        Terminated: "terminated", "สิ้นสุด";
        Customers: "Customers", "ลูกค้า";
        Volume: "Personal volume", "ยอดขายส่วนตัว";
        DownlineSize: "Downline", "ดาวน์ไลน์";
        DownlineVolume: "Downline volume", "ยอดขายดาวน์ไลน์";
        Upline: "Upline", "อัปไลน์";
        Everyone: "Distributors in the network", "ผู้จัดจำหน่ายในเครือข่าย";
        NetworkVolume: "Network volume", "ยอดขายทั้งเครือข่าย";
        Truncated: "More than 10,000 distributors have customers: volumes count the first 10,000 only.",
            "มีผู้จัดจำหน่ายที่มีลูกค้ามากกว่า 10,000 ราย ยอดขายนับเพียง 10,000 รายแรก";
        Scoped: "Counting only the customers your key may see.", "นับเฉพาะลูกค้าที่คีย์ของคุณมองเห็นได้";
        MoreHidden: "Showing the 500 with the largest group volume; not shown:", "แสดง 500 รายที่มียอดขายกลุ่มสูงสุด รายที่ไม่แสดง:";
        VolumeNote: "Volumes are purchase amounts summed in their currency's main unit.",
            "ยอดขายคือผลรวมของยอดซื้อในหน่วยหลักของสกุลเงิน";
    }
}

/// Rows of a distributor table on one page.
const SHOWN: usize = 500;

pub(super) fn routes() -> Router<State> {
    Router::new().route("/orgs/{org}/distributors", get(top)).route("/orgs/{org}/distributors/{id}", get(one))
}

/// One distributor's numbers.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Stats {
    customers: u64,
    /// Minor units.
    volume: f64,
    downline: u64,
    downline_volume: f64,
}

/// The whole tree with every distributor's numbers.
struct Tree {
    by_id: HashMap<Id, Distributor>,
    children: HashMap<Option<Id>, Vec<Id>>,
    stats: HashMap<Id, Stats>,
    truncated: bool,
}

impl Tree {
    /// Sum each distributor's downline bottom-up. `own` holds (customers, volume) per
    /// distributor.
    fn build(all: Vec<Distributor>, own: &HashMap<Id, (u64, f64)>) -> Tree {
        let by_id: HashMap<Id, Distributor> = all.into_iter().map(|d| (d.id, d)).collect();
        let mut children: HashMap<Option<Id>, Vec<Id>> = HashMap::new();
        for d in by_id.values() {
            // A sponsor that is not in the list (it cannot be, the store keeps a tree) would
            // hide a branch: show it at the top instead.
            let sponsor = d.sponsor.filter(|s| by_id.contains_key(s));
            children.entry(sponsor).or_default().push(d.id);
        }
        for list in children.values_mut() {
            list.sort_unstable();
        }
        let mut stats: HashMap<Id, Stats> = by_id
            .keys()
            .map(|&id| {
                let (customers, volume) = own.get(&id).copied().unwrap_or_default();
                (id, Stats { customers, volume, ..Stats::default() })
            })
            .collect();
        // Breadth first from the top; then the reverse order visits every recruit before its
        // sponsor, so each adds its finished numbers upward once.
        let mut order: Vec<Id> = children.get(&None).cloned().unwrap_or_default();
        let mut i = 0;
        while i < order.len() {
            if let Some(kids) = children.get(&Some(order[i])) {
                order.extend(kids);
            }
            i += 1;
        }
        for &id in order.iter().rev() {
            let Some(sponsor) = by_id[&id].sponsor.filter(|s| by_id.contains_key(s)) else { continue };
            let s = stats[&id];
            let up = stats.get_mut(&sponsor).expect("every distributor has stats");
            up.downline += 1 + s.downline;
            up.downline_volume += s.volume + s.downline_volume;
        }
        Tree { by_id, children, stats, truncated: false }
    }
}

/// Read every distributor and the customers' numbers per distributor, within the caller's scope.
async fn load(page: &OrgPage) -> Result<Tree, PageError> {
    let org = page.org.clone();
    let scope = page.caller.scope();
    page.blocking(move |p| {
        let view = p.view(&org, scope)?;
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |d: &Distributor| d.id);
            let batch = view.distributors(after, 1000, None)?;
            let done = batch.len() < 1000;
            all.extend(batch);
            if done {
                break;
            }
        }
        let result = view.aggregate(&AggregateQuery {
            filter: String::new(),
            group_by: vec!["distributor".into()],
            aggregations: vec![Aggregation { op: AggregateOp::Sum, field: Some("purchases.total_minor".into()) }],
            limit: 0,
        })?;
        let mut own = HashMap::new();
        for (i, key) in result.keys[0].values.iter().enumerate() {
            if let Some(id) = key.as_deref().and_then(|k| k.parse::<Id>().ok()) {
                let volume = result.values[0].values[i];
                own.insert(id, (result.counts[i], if volume.is_finite() { volume } else { 0.0 }));
            }
        }
        let mut tree = Tree::build(all, &own);
        tree.truncated = result.truncated;
        Ok(tree)
    })
    .await
}

/// Minor units as the main unit, grouped: `123450` → `1,234.50`.
fn volume(minor: f64) -> String {
    let cents = minor.round() as i64;
    let whole = group_thousands(cents.unsigned_abs() / 100);
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{whole}.{:02}", cents.unsigned_abs() % 100)
}

fn status(d: &Distributor) -> T {
    match d.status {
        DistributorStatus::Active => T::Active,
        DistributorStatus::Inactive => T::Inactive,
        DistributorStatus::Terminated => T::Terminated,
    }
}

async fn top(page: OrgPage) -> Result<Markup, PageError> {
    page.require(Role::ReadOnly)?;
    let tree = load(&page).await?;
    let t = |l: T| l.text(page.lang);
    let roots = tree.children.get(&None).cloned().unwrap_or_default();
    let total = roots.iter().fold(Stats::default(), |mut acc, id| {
        let s = tree.stats[id];
        acc.customers += s.customers;
        acc.volume += s.volume + s.downline_volume;
        acc.downline += 1 + s.downline;
        acc
    });
    Ok(page.render(
        Nav::Distributors,
        page.t(L::Distributors),
        html! {
            p.help { (t(T::Intro)) }
            (notes(&page, &tree))
            @if tree.by_id.is_empty() {
                p.muted { (t(T::None)) }
            } @else {
                div.cards {
                    div.card { div { (t(T::Everyone)) } div.big { (group_thousands(total.downline)) } }
                    div.card { div { (t(T::NetworkVolume)) } div.big { (volume(total.volume)) } }
                }
                h2 { (t(T::TopLevel)) }
                (table(&page, &tree, &roots))
            }
        },
    ))
}

async fn one(page: OrgPage, Path((_, id)): Path<(String, String)>) -> Result<Markup, PageError> {
    page.require(Role::ReadOnly)?;
    let not_found = || page.fail(ApiError::not_found(format!("distributor {id} does not exist")));
    let id: Id = id.parse().map_err(|_| not_found())?;
    let tree = load(&page).await?;
    let d = tree.by_id.get(&id).ok_or_else(not_found)?;
    let s = tree.stats[&id];
    let t = |l: T| l.text(page.lang);
    let mut upline = Vec::new();
    let mut next = d.sponsor;
    while let Some(sponsor) = next.and_then(|s| tree.by_id.get(&s)) {
        if upline.len() > tree.by_id.len() {
            break;
        }
        upline.push(sponsor);
        next = sponsor.sponsor;
    }
    upline.reverse();
    let recruits = tree.children.get(&Some(id)).cloned().unwrap_or_default();
    Ok(page.render(
        Nav::Distributors,
        &d.name,
        html! {
            nav aria-label=(t(T::Upline)) {
                p.breadcrumb {
                    a href=(page.href("/distributors")) { (t(T::TopLevel)) } " › "
                    @for u in &upline {
                        a href=(page.href(&format!("/distributors/{}", u.id))) { (u.name) } " › "
                    }
                    span aria-current="page" { (d.name) }
                }
            }
            (notes(&page, &tree))
            dl.facts {
                dt { (t(T::Rank)) } dd { (d.rank.as_deref().unwrap_or("—")) }
                dt { (t(T::Status)) } dd { (t(status(d))) }
                dt { (page.t(L::Branch)) } dd { (d.branch.as_deref().unwrap_or("—")) }
            }
            div.cards {
                div.card { div { (t(T::Customers)) } div.big { (group_thousands(s.customers)) } }
                div.card { div { (t(T::Volume)) } div.big { (volume(s.volume)) } }
                div.card { div { (t(T::DownlineSize)) } div.big id="downline-size" { (group_thousands(s.downline)) } }
                div.card { div { (t(T::DownlineVolume)) } div.big id="downline-volume" { (volume(s.downline_volume)) } }
            }
            h2 { (t(T::Recruits)) }
            @if recruits.is_empty() {
                p.muted { (t(T::NoRecruits)) }
            } @else {
                (table(&page, &tree, &recruits))
            }
        },
    ))
}

fn notes(page: &OrgPage, tree: &Tree) -> Markup {
    let t = |l: T| l.text(page.lang);
    html! {
        p.muted { (t(T::VolumeNote)) @if !page.caller.scope().is_whole_org() { " " (t(T::Scoped)) } }
        @if tree.truncated { p.warning { (t(T::Truncated)) } }
    }
}

/// Distributors, the largest group volume (their own and their downline's) first; at most
/// [`SHOWN`] of them, so that a sponsor of thousands still gets a light page.
fn table(page: &OrgPage, tree: &Tree, ids: &[Id]) -> Markup {
    let t = |l: T| l.text(page.lang);
    let group = |id: &Id| tree.stats[id].volume + tree.stats[id].downline_volume;
    let mut ids = ids.to_vec();
    ids.sort_by(|a, b| group(b).total_cmp(&group(a)).then(a.cmp(b)));
    let hidden = ids.len().saturating_sub(SHOWN);
    ids.truncate(SHOWN);
    html! {
        @if hidden > 0 { p.warning { (t(T::MoreHidden)) " " (group_thousands(hidden as u64)) } }
        div.table-wrap {
            table id="distributors" {
                thead { tr {
                    th { (t(T::Name)) } th { (t(T::Rank)) } th { (t(T::Status)) }
                    th.num { (t(T::Customers)) } th.num { (t(T::Volume)) }
                    th.num { (t(T::DownlineSize)) } th.num { (t(T::DownlineVolume)) }
                } }
                tbody {
                    @for id in &ids {
                        @let d = &tree.by_id[id];
                        @let s = tree.stats[id];
                        tr data-id=(id) {
                            td { a href=(page.href(&format!("/distributors/{id}"))) { (d.name) } }
                            td { (d.rank.as_deref().unwrap_or("")) }
                            td { (t(status(d))) }
                            td.num { (group_thousands(s.customers)) }
                            td.num { (volume(s.volume)) }
                            td.num { (group_thousands(s.downline)) }
                            td.num { (volume(s.downline_volume)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: Id, sponsor: Option<Id>) -> Distributor {
        Distributor {
            id,
            name: format!("d{id}"),
            sponsor,
            rank: None,
            status: DistributorStatus::Active,
            branch: None,
            attributes: Default::default(),
        }
    }

    #[test]
    fn downline_volume_sums_everyone_below_not_the_distributor_itself() {
        // 1 ─┬─ 2 ── 4
        //    └─ 3
        // 5 (another top sponsor)
        let all = vec![d(1, None), d(2, Some(1)), d(3, Some(1)), d(4, Some(2)), d(5, None)];
        let own = HashMap::from([(1, (1, 100.0)), (2, (2, 200.0)), (4, (1, 1000.0)), (5, (3, 7.0))]);
        let tree = Tree::build(all, &own);
        assert_eq!(tree.stats[&1], Stats { customers: 1, volume: 100.0, downline: 3, downline_volume: 1200.0 });
        assert_eq!(tree.stats[&2], Stats { customers: 2, volume: 200.0, downline: 1, downline_volume: 1000.0 });
        assert_eq!(tree.stats[&3], Stats::default());
        assert_eq!(tree.stats[&5].downline, 0);
        assert_eq!(tree.children[&None], vec![1, 5]);
    }

    #[test]
    fn volume_shows_minor_units_in_the_main_unit() {
        assert_eq!(volume(123_450.0), "1,234.50");
        assert_eq!(volume(5.0), "0.05");
        assert_eq!(volume(-250.0), "-2.50");
    }
}
