//! The host's timeline as the factors read it, for the plugins (feature `sdk`): the scorer and the
//! reporter must see a customer's interactions alike, or the fit would not be the scorer's model.

use rapport_plugin::{InteractionKind, TicketStatus, store};

use crate::{Seen, TicketSeen};

/// A customer's newest interactions before `before` (all when none), at most `limit`, reduced to
/// what the factors read.
pub fn timeline(customer: u64, before: Option<i64>, limit: u32) -> Vec<Seen> {
    store::timeline(customer, before, limit)
        .into_iter()
        .map(|i| {
            let text = [i.subject.as_deref(), i.body.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
            let ticket = match (&i.kind, &i.ticket) {
                (InteractionKind::Ticket, Some(t)) => Some(TicketSeen {
                    occurred_at: i.occurred_at,
                    open: !matches!(t.status, TicketStatus::Closed),
                    due_at: t.due_at,
                    closed_at: t.closed_at,
                }),
                _ => None,
            };
            let purchase = matches!(i.kind, InteractionKind::Purchase);
            Seen { occurred_at: i.occurred_at, source: i.source, text, ticket, purchase }
        })
        .collect()
}
