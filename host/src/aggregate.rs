//! Grouping and summarizing rows of (group key, field values) into an [`AggregateResult`]: the
//! arithmetic of the contract's `aggregate` over the rows the SQLite store selects (and the
//! empty answer of `plugins::Empty`).

use std::collections::BTreeMap;

use crate::model::{AggregateOp, AggregateQuery, AggregateResult, Column, KeyColumn};

/// The most groups one aggregation returns.
pub const MAX_GROUPS: u32 = 10_000;

/// Accumulates rows; one per customer.
pub struct Grouper<'q> {
    query: &'q AggregateQuery,
    groups: BTreeMap<Vec<Option<String>>, Group>,
}

struct Group {
    count: u64,
    /// Per aggregation: the values seen (percentiles need them all; the rest fold them).
    values: Vec<Vec<f64>>,
}

impl<'q> Grouper<'q> {
    pub fn new(query: &'q AggregateQuery) -> Grouper<'q> {
        Grouper { query, groups: BTreeMap::new() }
    }

    /// One customer: its key (one value per group-by field) and its value of each
    /// aggregation's field (`None` without a value, or for a plain count).
    pub fn add(&mut self, key: Vec<Option<String>>, values: &[Option<f64>]) {
        let n = self.query.aggregations.len();
        let group = self.groups.entry(key).or_insert_with(|| Group { count: 0, values: vec![Vec::new(); n] });
        group.count += 1;
        for (k, v) in values.iter().enumerate() {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                group.values[k].push(v);
            }
        }
    }

    pub fn finish(self) -> AggregateResult {
        let limit = match self.query.limit {
            0 => MAX_GROUPS,
            n => n.min(MAX_GROUPS),
        } as usize;
        let truncated = self.groups.len() > limit;
        let mut keys: Vec<KeyColumn> =
            self.query.group_by.iter().map(|name| KeyColumn { name: name.clone(), values: Vec::new() }).collect();
        let mut counts = Vec::new();
        let mut values: Vec<Column> =
            self.query.aggregations.iter().map(|a| Column { name: a.label(), values: Vec::new() }).collect();
        for (key, mut group) in self.groups.into_iter().take(limit) {
            for (column, k) in keys.iter_mut().zip(key) {
                column.values.push(k);
            }
            counts.push(group.count);
            for ((column, aggregation), seen) in values.iter_mut().zip(&self.query.aggregations).zip(&mut group.values)
            {
                let value = match (aggregation.op, &aggregation.field) {
                    (AggregateOp::Count, None) => group.count as f64,
                    (op, _) => summarize(op, seen),
                };
                column.values.push(value);
            }
        }
        AggregateResult { keys, counts, values, truncated }
    }
}

fn summarize(op: AggregateOp, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return if op == AggregateOp::Count || op == AggregateOp::Sum { 0.0 } else { f64::NAN };
    }
    let percentile = |values: &mut [f64], p: f64| {
        values.sort_by(f64::total_cmp);
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1]
    };
    match op {
        AggregateOp::Count => values.len() as f64,
        AggregateOp::Sum => values.iter().sum(),
        AggregateOp::Mean => values.iter().sum::<f64>() / values.len() as f64,
        AggregateOp::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        AggregateOp::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        AggregateOp::P50 => percentile(values, 0.50),
        AggregateOp::P90 => percentile(values, 0.90),
        AggregateOp::P99 => percentile(values, 0.99),
    }
}
