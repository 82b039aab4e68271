//! The contract's `aggregate` over SQLite: the rows (one per customer, or per customer and tag
//! when grouping by tag) are selected with the filter language's SQL, then grouped and summarized
//! by `crate::aggregate` — one pass, no per-customer round trips for the plugin.

use rusqlite::params_from_iter;
use rusqlite::types::{Value, ValueRef};

use super::{OrgStore, Result, StoreError, filter, scoped};
use crate::aggregate::Grouper;
use crate::model::{AggregateOp, AggregateQuery, AggregateResult};

impl OrgStore {
    /// # Errors
    /// `Filter` when the filter does not parse; `Invalid` for too many group-bys or aggregations,
    /// an unknown field or `label_before.` key, an aggregation of text, or one other than a count
    /// without a field; a database failure.
    pub fn aggregate(&self, q: &AggregateQuery) -> Result<AggregateResult> {
        let invalid = StoreError::Invalid;
        if q.group_by.len() > 4 || q.aggregations.len() > 16 {
            return Err(invalid("an aggregation takes at most 4 group-by fields and 16 aggregations".into()));
        }
        let parsed = filter::parse(&q.filter)?;
        let mut params: Vec<Value> = vec![Value::Integer(self.org.id)];
        let mut select = Vec::new();
        let mut by_tag = false;
        for name in &q.group_by {
            if let Some(label) = name.strip_prefix(LABEL_BEFORE) {
                select.push(label_before(name, label, &mut params)?);
                continue;
            }
            let f = filter::field(name).map_err(|e| invalid(e.to_string()))?;
            by_tag |= f == filter::Field::Tag;
            select.push(filter::field_sql(&f, &mut params));
        }
        for a in &q.aggregations {
            match (&a.field, a.op) {
                (None, AggregateOp::Count) => select.push("NULL".into()),
                (None, op) => return Err(invalid(format!("`{}` needs a field to aggregate", op.name()))),
                (Some(name), _) => {
                    let f = filter::field(name).map_err(|e| invalid(e.to_string()))?;
                    if matches!(f.ty(), filter::Type::Text) || f == filter::Field::Tag {
                        return Err(invalid(format!("`{name}` is text; aggregate a number or a time")));
                    }
                    select.push(filter::field_sql(&f, &mut params));
                }
            }
        }
        let condition = filter::to_sql(&parsed, &mut params);
        let join = if by_tag { " LEFT JOIN customer_tags t ON t.customer_id = c.id" } else { "" };
        // The select list comes before `?1` in the statement's text, and SQLite numbers an
        // anonymous `?` one past the largest number seen so far in the text: left anonymous, the
        // select list's first `?` would become ?1 and bind the organization's id. Number them
        // explicitly from 2, in the order their values were pushed after the organization's.
        let columns = if select.is_empty() { "NULL".to_owned() } else { number_placeholders(&select.join(", "), 2) };
        let sql = format!(
            "SELECT {columns} FROM customers c{join} WHERE c.org_id = ?1 AND c.erased_at IS NULL AND {condition}"
        );
        let keys = q.group_by.len();
        let mut grouper = Grouper::new(q);
        let conn = self.conn()?;
        let mut stmt = conn.prepare(scoped(&sql))?;
        let mut rows = stmt.query(params_from_iter(params))?;
        let mut values = vec![None; q.aggregations.len()];
        while let Some(row) = rows.next()? {
            let key = (0..keys).map(|i| row.get_ref(i).map(text)).collect::<rusqlite::Result<Vec<_>>>()?;
            for (k, v) in values.iter_mut().enumerate() {
                *v = number(row.get_ref(keys + k)?);
            }
            grouper.add(key, &values);
        }
        Ok(grouper.finish())
    }
}

/// A group-by key of its own, not a filter field: `label_before.<plugin>.<label>` is the label a
/// customer had before their latest scoring (from `score_history`), none when they were scored
/// once. Grouped with `label.<plugin>.<label>`, it is the movement between segments since each
/// customer's previous scoring — what a segments report shows after a rescore.
const LABEL_BEFORE: &str = "label_before.";

fn label_before(name: &str, label: &str, params: &mut Vec<Value>) -> Result<String> {
    let Some((plugin, label)) = label.split_once('.').filter(|(p, l)| !p.is_empty() && !l.is_empty()) else {
        return Err(StoreError::Invalid(format!("`{name}` names no label: write label_before.<plugin>.<label>")));
    };
    for _ in 0..2 {
        params.push(Value::Text(plugin.to_owned()));
        params.push(Value::Text(label.to_owned()));
    }
    Ok("(SELECT h.label FROM score_history h WHERE h.customer_id = c.id AND h.plugin = ? AND h.name = ? \
        AND h.computed_at < (SELECT s.computed_at FROM scores s WHERE s.customer_id = c.id AND s.plugin = ? \
        AND s.name = ?) ORDER BY h.computed_at DESC LIMIT 1)"
        .into())
}

/// Every anonymous `?` of `sql` numbered in order, the first as `?first`.
fn number_placeholders(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = first;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '?' && !chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push_str(&n.to_string());
            n += 1;
        }
    }
    out
}

fn text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn number(v: ValueRef<'_>) -> Option<f64> {
    match v {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(r) => Some(r),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        ValueRef::Null | ValueRef::Blob(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn select_placeholders_are_numbered_after_the_organization() {
        let sql = super::number_placeholders("(s.plugin = ? AND s.name = ?), json_extract(c.attributes, ?), ?7", 2);
        assert_eq!(sql, "(s.plugin = ?2 AND s.name = ?3), json_extract(c.attributes, ?4), ?7");
    }
}
