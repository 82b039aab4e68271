//! Scorer features computed where the data is: one aggregate query per batch of customers, so a
//! scorer gets flat columns and never walks timelines itself. The meaning of each measure is the
//! contract's (`measure` in the WIT); `features_computed_in_sql_mean_what_the_contract_says` in
//! the tests checks this SQL against a plain reading of it over real timelines.

use std::collections::HashMap;

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::{OrgStore, Result, scoped};
use crate::model::{Column, Feature, FeatureBatch, Id, Measure, Timestamp};

const DAY_MS: i64 = 86_400_000;

impl OrgStore {
    /// Customers that can be scored (not erased), in id order, after `after`.
    ///
    /// # Errors
    /// A database failure.
    pub fn scorable_ids(&self, after: i64, limit: u32) -> Result<Vec<Id>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(
            "SELECT id FROM customers WHERE org_id = ?1 AND id > ?2 AND erased_at IS NULL ORDER BY id LIMIT ?3",
        ))?;
        let rows = stmt.query_map(rusqlite::params![self.org.id, after, limit], |r| r.get::<_, i64>(0))?;
        Ok(rows.map(|r| r.map(|id| id as Id)).collect::<rusqlite::Result<_>>()?)
    }

    /// # Errors
    /// A database failure.
    pub fn count_scorable(&self) -> Result<u64> {
        let n: i64 = self
            .conn()?
            .prepare_cached(scoped("SELECT COUNT(*) FROM customers WHERE org_id = ?1 AND erased_at IS NULL"))?
            .query_row([self.org.id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The feature columns a scorer asked for, for these customers, in their order.
    ///
    /// # Errors
    /// A database failure.
    pub fn features(&self, ids: &[Id], features: &[Feature], now: Timestamp) -> Result<FeatureBatch> {
        let mut columns: Vec<Column> = features
            .iter()
            .map(|f| Column { name: f.name.clone(), values: vec![empty_value(f.measure); ids.len()] })
            .collect();
        if ids.is_empty() || features.is_empty() {
            return Ok(FeatureBatch { ids: ids.to_vec(), now, columns });
        }
        let mut params: Vec<Value> = vec![Value::Integer(self.org.id)];
        let ids_json = serde_json::to_string(ids).expect("ids serialize");
        params.push(Value::Text(ids_json));
        let aggregates: Vec<String> = features.iter().map(|f| aggregate(f, &mut params)).collect();
        let sql = format!(
            "SELECT i.customer_id, {} FROM interactions i WHERE i.org_id = ?1 AND i.customer_id IN \
             (SELECT value FROM json_each(?2)) GROUP BY i.customer_id",
            aggregates.join(", ")
        );
        let position: HashMap<Id, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(scoped(&sql))?;
        let mut rows = stmt.query(params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            let id = row.get::<_, i64>(0)? as Id;
            let Some(&at) = position.get(&id) else { continue };
            for (k, column) in columns.iter_mut().enumerate() {
                if let Some(v) = row.get::<_, Option<f64>>(k + 1)? {
                    column.values[at] = v;
                }
            }
        }
        Ok(FeatureBatch { ids: ids.to_vec(), now, columns })
    }
}

/// A customer with no matching interactions: zero counts and sums, no first or last time.
fn empty_value(m: Measure) -> f64 {
    match m {
        Measure::Count | Measure::DistinctDays | Measure::SumAmount => 0.0,
        Measure::FirstAt | Measure::LastAt => f64::NAN,
    }
}

/// One feature as a conditional aggregate, binding its kinds and window as parameters.
fn aggregate(f: &Feature, params: &mut Vec<Value>) -> String {
    let mut conditions = Vec::new();
    if !f.kinds.is_empty() {
        let mut marks = Vec::new();
        for k in &f.kinds {
            params.push(Value::Text(k.as_str().to_owned()));
            marks.push(format!("?{}", params.len()));
        }
        conditions.push(format!("i.kind IN ({})", marks.join(", ")));
    }
    if let Some(since) = f.since {
        params.push(Value::Integer(since));
        conditions.push(format!("i.occurred_at >= ?{}", params.len()));
    }
    if let Some(until) = f.until {
        params.push(Value::Integer(until));
        conditions.push(format!("i.occurred_at <= ?{}", params.len()));
    }
    let when = |expr: &str| {
        if conditions.is_empty() {
            expr.to_owned()
        } else {
            format!("CASE WHEN {} THEN {expr} END", conditions.join(" AND "))
        }
    };
    match f.measure {
        Measure::Count => format!("COUNT({})", when("1")),
        // The start of the (UTC) day, floored for times before 1970 too.
        Measure::DistinctDays => format!(
            "COUNT(DISTINCT {})",
            when(&format!("i.occurred_at - (((i.occurred_at % {DAY_MS}) + {DAY_MS}) % {DAY_MS})"))
        ),
        Measure::SumAmount => format!("TOTAL({})", when("i.amount_minor")),
        Measure::FirstAt => format!("MIN({})", when("i.occurred_at")),
        Measure::LastAt => format!("MAX({})", when("i.occurred_at")),
    }
}
