//! The movement arithmetic over the host's cross-tab, unit-tested natively: from customer counts
//! per (label now, label before), each segment's size, arrivals and departures.

use std::collections::BTreeMap;

/// One segment's movement since each customer's previous scoring.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Movement {
    /// Customers in the segment now.
    pub now: u64,
    /// Customers in the segment before (among those scored before).
    pub before: u64,
    /// Now here, before in another segment.
    pub moved_in: u64,
    /// Before here, now in another segment (or no longer labelled).
    pub moved_out: u64,
    /// Now here, and scored for the first time.
    pub first_scored: u64,
}

/// `cells`: (label now, label before, customers); `None` for no label. The result is per label,
/// ordered by label; customers without a label now appear only as departures of their old one.
pub fn movement(cells: &[(Option<String>, Option<String>, u64)]) -> BTreeMap<String, Movement> {
    let mut out: BTreeMap<String, Movement> = BTreeMap::new();
    for (now, before, n) in cells {
        if let Some(now) = now {
            let m = out.entry(now.clone()).or_default();
            m.now += n;
            match before {
                None => m.first_scored += n,
                Some(b) if b != now => m.moved_in += n,
                Some(_) => {}
            }
        }
        if let Some(before) = before {
            let m = out.entry(before.clone()).or_default();
            m.before += n;
            if now.as_ref() != Some(before) {
                m.moved_out += n;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(now: Option<&str>, before: Option<&str>, n: u64) -> (Option<String>, Option<String>, u64) {
        (now.map(Into::into), before.map(Into::into), n)
    }

    #[test]
    fn arrivals_and_departures_balance() {
        let cells = [
            cell(Some("champions"), Some("champions"), 10),
            cell(Some("champions"), Some("loyal"), 3),
            cell(Some("loyal"), Some("champions"), 2),
            cell(Some("loyal"), None, 4),
            cell(Some("lost"), Some("lost"), 1),
            cell(None, Some("lost"), 5),
        ];
        let m = movement(&cells);
        assert_eq!(m["champions"], Movement { now: 13, before: 12, moved_in: 3, moved_out: 2, first_scored: 0 });
        assert_eq!(m["loyal"], Movement { now: 6, before: 3, moved_in: 2, moved_out: 3, first_scored: 4 });
        assert_eq!(m["lost"], Movement { now: 1, before: 6, moved_in: 0, moved_out: 5, first_scored: 0 });
        // Every segment: now = before + in − out + first.
        for (label, s) in &m {
            assert_eq!(s.now + s.moved_out, s.before + s.moved_in + s.first_scored, "{label}");
        }
    }
}
