//! The size of what a plugin returns, checked against `Limits::output_bytes`.
//!
//! Counted on the host's decoded values (string bytes, 8 per number) rather than by
//! serializing, so a million scores cost a pass over their lengths, not a JSON encoding.

use crate::model::*;

pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for String {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weight(&self) -> usize {
        self.as_ref().map_or(0, Weigh::weight)
    }
}

macro_rules! weigh_vec {
    ($($t:ty),*) => {$(
        impl Weigh for Vec<$t> {
            fn weight(&self) -> usize {
                self.iter().map(Weigh::weight).sum()
            }
        }
    )*};
}
weigh_vec!(String, Action, Column, LabelColumn, TextColumn, Cell, Vec<Cell>);

impl Weigh for f64 {
    fn weight(&self) -> usize {
        8
    }
}

impl Weigh for serde_json::Value {
    fn weight(&self) -> usize {
        self.to_string().len()
    }
}

impl Weigh for Attributes {
    fn weight(&self) -> usize {
        self.iter().map(|(k, v)| k.len() + v.weight()).sum()
    }
}

impl Weigh for Decision {
    fn weight(&self) -> usize {
        match self {
            Decision::Allow => 0,
            Decision::Warn { message } => message.weight(),
            Decision::Deny(d) => d.reason.weight() + d.field.weight(),
            Decision::Patch { patches } => patches.iter().map(|p| p.field.weight() + p.value.weight()).sum(),
        }
    }
}

impl Weigh for Action {
    fn weight(&self) -> usize {
        8 + match self {
            Action::AddTag { tag, .. } => tag.weight(),
            Action::OpenTask(t) => t.subject.weight() + t.body.weight() + t.category.weight() + t.assignee.weight(),
            Action::QueueMessage(m) => m.channel.weight() + m.template.weight() + m.variables.weight(),
            Action::Assign(a) => a.branch.weight(),
        }
    }
}

/// A fitted model: opaque bytes.
impl Weigh for Vec<u8> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for ScorerSpec {
    fn weight(&self) -> usize {
        self.features.iter().map(|f| f.name.len() + 16 * (1 + f.kinds.len())).sum::<usize>()
            + self.scores.iter().map(|s| s.name.len() + s.description.len()).sum::<usize>()
            + self.labels.weight()
    }
}

impl Weigh for Column {
    fn weight(&self) -> usize {
        self.name.len() + 8 * self.values.len()
    }
}

impl Weigh for LabelColumn {
    fn weight(&self) -> usize {
        self.name.len() + self.categories.weight() + 4 * self.codes.len()
    }
}

impl Weigh for TextColumn {
    fn weight(&self) -> usize {
        self.name.len() + self.values.weight()
    }
}

impl Weigh for ScoreBatch {
    fn weight(&self) -> usize {
        self.scores.weight() + self.labels.weight() + self.explanations.weight()
    }
}

impl Weigh for Cell {
    fn weight(&self) -> usize {
        match self {
            Cell::Text(s) => s.len(),
            _ => 8,
        }
    }
}

impl Weigh for Report {
    fn weight(&self) -> usize {
        self.title.weight()
            + self.columns.iter().map(|c| c.name.len() + 1).sum::<usize>()
            + self.rows.iter().map(Weigh::weight).sum::<usize>()
            + self.chart.as_ref().map_or(0, |c| c.x.len() + c.y.weight() + c.title.weight())
    }
}
