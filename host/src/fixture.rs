//! A store in a JSON file, for running plugins locally (`rapport plugin run --fixture`).
//!
//! It answers the same host functions as the real store, and computes scorer features with the
//! same meaning, so a plugin that works on a fixture works on an organization.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::aggregate::Grouper;
use crate::model::{
    AggregateQuery, AggregateResult, Branch, Column, Customer, CustomerPage, Distributor, DownlineMember, Feature,
    FeatureBatch, Id, Interaction, InteractionKind, Measure, TicketStatus, Timestamp,
};
use crate::plugins::{DataError, DataSource};
use crate::store::filter::{Aggregate, Field};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub customers: Vec<Customer>,
    #[serde(default)]
    pub interactions: Vec<Interaction>,
    #[serde(default)]
    pub distributors: Vec<Distributor>,
    #[serde(default)]
    pub branches: Vec<Branch>,
}

impl Fixture {
    pub fn load(path: &Path) -> anyhow::Result<Fixture> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read fixture {}", path.display()))?;
        Fixture::parse(&text).with_context(|| format!("invalid fixture {}", path.display()))
    }

    /// Parse and check references, so that a typo in a fixture is an error, not an empty result.
    pub fn parse(text: &str) -> anyhow::Result<Fixture> {
        let fixture: Fixture = serde_json::from_str(text)?;
        let mut ids = HashSet::new();
        for c in &fixture.customers {
            if c.id == 0 || !ids.insert(c.id) {
                bail!("customer ids must be unique and non-zero (id {})", c.id);
            }
        }
        for (n, i) in fixture.interactions.iter().enumerate() {
            if !ids.contains(&i.customer) {
                bail!("interactions[{n}] belongs to customer {}, which the fixture does not have", i.customer);
            }
        }
        let distributors: HashSet<Id> = fixture.distributors.iter().map(|d| d.id).collect();
        for d in &fixture.distributors {
            if let Some(s) = d.sponsor.filter(|s| !distributors.contains(s)) {
                bail!("distributor {} has sponsor {s}, which the fixture does not have", d.id);
            }
        }
        Ok(fixture)
    }

    /// The feature columns a scorer asked for, for these customers, in their order.
    pub fn features(&self, ids: &[Id], features: &[Feature], now: Timestamp) -> FeatureBatch {
        let mut by_customer: HashMap<Id, Vec<&Interaction>> = HashMap::new();
        for i in &self.interactions {
            by_customer.entry(i.customer).or_default().push(i);
        }
        let columns = features
            .iter()
            .map(|f| Column {
                name: f.name.clone(),
                values: ids
                    .iter()
                    .map(|id| feature_value(f, by_customer.get(id).map_or(&[][..], Vec::as_slice)))
                    .collect(),
            })
            .collect();
        FeatureBatch { ids: ids.to_vec(), now, columns }
    }
}

/// The meaning of a feature (see `measure` in the contract); the SQL store must agree with it.
pub fn feature_value(f: &Feature, interactions: &[&Interaction]) -> f64 {
    let matching = interactions.iter().filter(|i| {
        (f.kinds.is_empty() || f.kinds.contains(&i.kind))
            && f.since.is_none_or(|s| i.occurred_at >= s)
            && f.until.is_none_or(|u| i.occurred_at <= u)
    });
    match f.measure {
        Measure::Count => matching.count() as f64,
        Measure::DistinctDays => {
            matching.map(|i| i.occurred_at.div_euclid(DAY_MS)).collect::<HashSet<_>>().len() as f64
        }
        Measure::SumAmount => matching.filter_map(|i| i.amount.as_ref()).map(|m| m.amount_minor as f64).sum(),
        Measure::FirstAt => matching.map(|i| i.occurred_at).min().map_or(f64::NAN, |t| t as f64),
        Measure::LastAt => matching.map(|i| i.occurred_at).max().map_or(f64::NAN, |t| t as f64),
    }
}

/// A customer's value of a field of the filter language, as the SQL store computes it.
fn field_value(field: &Field, c: &Customer, interactions: &[&Interaction]) -> Option<serde_json::Value> {
    use serde_json::Value;
    let purchases = || interactions.iter().filter(|i| i.kind == InteractionKind::Purchase);
    let tickets = || interactions.iter().filter(|i| i.kind == InteractionKind::Ticket);
    let time = |t: Option<i64>| t.map(Value::from);
    match field {
        Field::Id => Some(Value::from(c.id)),
        Field::Name => c.name.clone().map(Value::from),
        Field::Email => c.email.clone().map(Value::from),
        Field::Phone => c.phone.clone().map(Value::from),
        Field::Branch => c.branch.clone().map(Value::from),
        Field::Distributor => c.distributor.map(Value::from),
        Field::CreatedAt => Some(Value::from(c.created_at)),
        Field::UpdatedAt => Some(Value::from(c.updated_at)),
        Field::Tag => None,
        Field::Attribute(key) => c.attributes.get(key).cloned(),
        // A fixture holds no scores.
        Field::Score { .. } | Field::Label { .. } => None,
        Field::Aggregate(a) => match a {
            Aggregate::PurchaseCount => Some(Value::from(purchases().count())),
            Aggregate::PurchaseTotalMinor => {
                Some(Value::from(purchases().filter_map(|i| i.amount.as_ref()).map(|m| m.amount_minor).sum::<i64>()))
            }
            Aggregate::FirstPurchase => time(purchases().map(|i| i.occurred_at).min()),
            Aggregate::LastPurchase => time(purchases().map(|i| i.occurred_at).max()),
            Aggregate::TicketCount => Some(Value::from(tickets().count())),
            Aggregate::OpenTickets => Some(Value::from(
                tickets().filter(|i| i.ticket.as_ref().is_none_or(|t| t.status != TicketStatus::Closed)).count(),
            )),
            Aggregate::OverdueTickets => {
                let now = crate::store::now_ms();
                Some(Value::from(
                    tickets()
                        .filter_map(|i| i.ticket.as_ref())
                        .filter(|t| t.status != TicketStatus::Closed && t.due_at.is_some_and(|due| due < now))
                        .count(),
                ))
            }
            Aggregate::InteractionCount => Some(Value::from(interactions.len())),
            Aggregate::LastInteraction => time(interactions.iter().map(|i| i.occurred_at).max()),
        },
    }
}

impl Fixture {
    /// The contract's `aggregate` over the fixture, computed in memory. Like `query_customers`
    /// here, it takes no filter.
    fn aggregate_in_memory(&self, q: &AggregateQuery) -> Result<AggregateResult, String> {
        if !q.filter.trim().is_empty() {
            return Err(format!(
                "the fixture runner does not evaluate filters (got `{}`); aggregate with an empty filter",
                q.filter
            ));
        }
        let parse = |name: &str| crate::store::filter::field(name);
        let keys: Vec<Field> = q.group_by.iter().map(|n| parse(n)).collect::<Result<_, _>>()?;
        let fields: Vec<Option<Field>> =
            q.aggregations.iter().map(|a| a.field.as_deref().map(parse).transpose()).collect::<Result<_, _>>()?;
        let mut by_customer: HashMap<Id, Vec<&Interaction>> = HashMap::new();
        for i in &self.interactions {
            by_customer.entry(i.customer).or_default().push(i);
        }
        let text = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let mut grouper = Grouper::new(q);
        for c in &self.customers {
            let mine = by_customer.get(&c.id).map_or(&[][..], Vec::as_slice);
            let values: Vec<Option<f64>> = fields
                .iter()
                .map(|f| f.as_ref().and_then(|f| field_value(f, c, mine)).and_then(|v| v.as_f64()))
                .collect();
            // One row per tag when grouping by tag (none for a customer without tags).
            let tags: Vec<Option<String>> = if keys.contains(&Field::Tag) && !c.tags.is_empty() {
                c.tags.iter().cloned().map(Some).collect()
            } else {
                vec![None]
            };
            for tag in tags {
                let key = keys
                    .iter()
                    .map(|k| match k {
                        Field::Tag => tag.clone(),
                        other => field_value(other, c, mine).map(text),
                    })
                    .collect();
                grouper.add(key, &values);
            }
        }
        Ok(grouper.finish())
    }
}

impl DataSource for Fixture {
    fn customer(&self, id: Id) -> Result<Option<Customer>, DataError> {
        Ok(self.customers.iter().find(|c| c.id == id).cloned())
    }

    fn find_customer(&self, source: &str, external_id: &str) -> Result<Option<Customer>, DataError> {
        Ok(self
            .customers
            .iter()
            .find(|c| c.external_ids.iter().any(|e| e.source == source && e.id == external_id))
            .cloned())
    }

    fn timeline(&self, customer: Id, before: Option<Timestamp>, limit: u32) -> Result<Vec<Interaction>, DataError> {
        let mut items: Vec<Interaction> = self
            .interactions
            .iter()
            .filter(|i| i.customer == customer && before.is_none_or(|b| i.occurred_at < b))
            .cloned()
            .collect();
        items.sort_by(|a, b| b.occurred_at.cmp(&a.occurred_at).then(b.id.cmp(&a.id)));
        items.truncate(limit as usize);
        Ok(items)
    }

    fn query_customers(
        &self,
        filter: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Result<CustomerPage, String>, DataError> {
        if !filter.trim().is_empty() {
            return Ok(Err(format!(
                "the fixture runner pages through every customer and does not evaluate filters (got `{filter}`); \
                 pass an empty filter"
            )));
        }
        let start = match cursor.map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(_)) => return Ok(Err(format!("invalid cursor `{}`", cursor.unwrap_or_default()))),
        };
        let end = (start + limit as usize).min(self.customers.len());
        let items = self.customers.get(start..end).unwrap_or_default().to_vec();
        let next_cursor = (end < self.customers.len()).then(|| end.to_string());
        Ok(Ok(CustomerPage { items, next_cursor }))
    }

    fn distributor(&self, id: Id) -> Result<Option<Distributor>, DataError> {
        Ok(self.distributors.iter().find(|d| d.id == id).cloned())
    }

    fn downline(&self, distributor: Id, max_depth: u32) -> Result<Vec<DownlineMember>, DataError> {
        let mut out = Vec::new();
        let mut frontier = vec![distributor];
        for depth in 1..=max_depth {
            let next: Vec<&Distributor> =
                self.distributors.iter().filter(|d| d.sponsor.is_some_and(|s| frontier.contains(&s))).collect();
            if next.is_empty() {
                break;
            }
            frontier = next.iter().map(|d| d.id).collect();
            out.extend(next.into_iter().map(|d| DownlineMember { distributor: d.clone(), depth }));
        }
        Ok(out)
    }

    fn aggregate(&self, query: &AggregateQuery) -> Result<Result<AggregateResult, String>, DataError> {
        Ok(self.aggregate_in_memory(query))
    }
}
