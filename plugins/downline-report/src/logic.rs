//! The roll-up over a plain tree, unit-tested natively: group volume and group active customers
//! (a node plus everyone below it), downline size, and the rows in tree order.

use std::collections::BTreeMap;

/// One distributor of the report's tree, with their own numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: u64,
    /// The sponsor, when the sponsor is in the report's tree (none for the report's roots).
    pub parent: Option<u64>,
    /// Levels below the report's root (0 for a root).
    pub depth: u32,
    pub customers: u64,
    pub active_customers: u64,
    pub personal_volume: i64,
}

/// A node with its roll-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Rolled {
    pub node: Node,
    pub group_volume: i64,
    pub group_active_customers: u64,
    /// Everyone below, at any depth.
    pub downline: u64,
}

/// Roll the tree up, and order it depth first (each node before its downline, siblings by id),
/// the order a person reads a tree in.
pub fn roll_up(nodes: Vec<Node>) -> Vec<Rolled> {
    let index: BTreeMap<u64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let mut rolled: Vec<Rolled> = nodes
        .into_iter()
        .map(|node| Rolled {
            group_volume: node.personal_volume,
            group_active_customers: node.active_customers,
            downline: 0,
            node,
        })
        .collect();
    // Deepest first: every node's totals are final before they are added to its parent.
    let mut order: Vec<usize> = (0..rolled.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(rolled[i].node.depth));
    for i in order {
        let Some(&p) = rolled[i].node.parent.as_ref().and_then(|p| index.get(p)) else { continue };
        let (volume, active, downline) = (rolled[i].group_volume, rolled[i].group_active_customers, rolled[i].downline);
        rolled[p].group_volume += volume;
        rolled[p].group_active_customers += active;
        rolled[p].downline += downline + 1;
    }
    let mut children: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
    for (i, r) in rolled.iter().enumerate() {
        let parent = r.node.parent.filter(|p| index.contains_key(p));
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| rolled[i].node.id);
    }
    let mut out = Vec::with_capacity(rolled.len());
    let mut stack: Vec<usize> = children.get(&None).cloned().unwrap_or_default();
    stack.reverse();
    while let Some(i) = stack.pop() {
        out.push(i);
        if let Some(kids) = children.get(&Some(rolled[i].node.id)) {
            stack.extend(kids.iter().rev());
        }
    }
    let mut slots: Vec<Option<Rolled>> = rolled.into_iter().map(Some).collect();
    out.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, parent: Option<u64>, depth: u32, active: u64, volume: i64) -> Node {
        Node { id, parent, depth, customers: active + 1, active_customers: active, personal_volume: volume }
    }

    #[test]
    fn group_volume_is_the_node_and_everyone_below() {
        //      1
        //    /   \
        //   3     2
        //   |
        //   4
        let rows = roll_up(vec![
            node(4, Some(3), 2, 1, 40),
            node(1, None, 0, 1, 100),
            node(2, Some(1), 1, 0, 20),
            node(3, Some(1), 1, 2, 30),
        ]);
        let ids: Vec<u64> = rows.iter().map(|r| r.node.id).collect();
        assert_eq!(ids, [1, 2, 3, 4], "depth first, siblings by id");
        let by = |id: u64| rows.iter().find(|r| r.node.id == id).unwrap();
        assert_eq!((by(1).group_volume, by(1).group_active_customers, by(1).downline), (190, 4, 3));
        assert_eq!((by(3).group_volume, by(3).group_active_customers, by(3).downline), (70, 3, 1));
        assert_eq!((by(2).group_volume, by(2).downline), (20, 0));
        assert_eq!((by(4).group_volume, by(4).downline), (40, 0));
    }

    #[test]
    fn several_roots_stay_apart() {
        let rows = roll_up(vec![node(7, None, 0, 0, 5), node(9, Some(7), 1, 0, 5), node(8, None, 0, 0, 1)]);
        let ids: Vec<u64> = rows.iter().map(|r| r.node.id).collect();
        assert_eq!(ids, [7, 9, 8]);
        assert_eq!((rows[0].group_volume, rows[2].group_volume), (10, 1));
    }
}
