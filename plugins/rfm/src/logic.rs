//! RFM over plain numbers, unit-tested natively: quintile cut points fitted over the whole
//! organization, the 1–5 scores, the combined score and the segment.

/// Milliseconds per day.
pub const DAY_MS: f64 = 86_400_000.0;

/// The model bytes start with this tag, so that bytes of another scorer (or an older layout) are
/// refused instead of read as cut points.
const MAGIC: &[u8; 4] = b"RFM1";

/// Quintile cut points per dimension, fitted over every customer with a purchase. A value's score
/// is 1 + the number of cut points it exceeds, so the top fifth scores 5.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Over the time of the last purchase (later = more recent = higher R). Times rather than
    /// "days ago" keep the cuts valid when a customer is rescored later than the fit.
    pub recency: [f64; 4],
    pub frequency: [f64; 4],
    pub monetary: [f64; 4],
    /// Customers the cuts were fitted on.
    pub customers: u64,
}

impl Model {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(self.customers.to_le_bytes());
        for v in self.recency.iter().chain(&self.frequency).chain(&self.monetary) {
            out.extend(v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Model> {
        let rest = bytes.strip_prefix(MAGIC)?;
        if rest.len() != 8 + 12 * 8 {
            return None;
        }
        let word = |i: usize| -> [u8; 8] { rest[i * 8..i * 8 + 8].try_into().expect("8 bytes") };
        let cuts = |from: usize| std::array::from_fn(|k| f64::from_le_bytes(word(1 + from + k)));
        Some(Model { customers: u64::from_le_bytes(word(0)), recency: cuts(0), frequency: cuts(4), monetary: cuts(8) })
    }
}

/// Whether a customer has anything to score: at least one purchase with a time.
pub fn is_buyer(last_at: f64, count: f64) -> bool {
    last_at.is_finite() && count > 0.0
}

/// Fit the cut points on the buyers among the population's columns (by position).
pub fn fit(last_at: &[f64], count: &[f64], spend: &[f64]) -> Model {
    let buyers: Vec<usize> = (0..last_at.len()).filter(|&i| is_buyer(last_at[i], count[i])).collect();
    let cuts = |column: &[f64]| quintile_cuts(buyers.iter().map(|&i| column[i]).collect());
    Model { recency: cuts(last_at), frequency: cuts(count), monetary: cuts(spend), customers: buyers.len() as u64 }
}

/// The 20th, 40th, 60th and 80th percentiles (nearest rank); zeros for no values.
pub fn quintile_cuts(mut values: Vec<f64>) -> [f64; 4] {
    if values.is_empty() {
        return [0.0; 4];
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    std::array::from_fn(|k| values[((k + 1) * n).div_ceil(5).max(1) - 1])
}

/// 1–5: one more than the number of cut points the value exceeds. Ties with a cut point stay
/// below it, so many customers with one purchase all score F = 1 rather than being split
/// arbitrarily.
pub fn quintile(value: f64, cuts: &[f64; 4]) -> u8 {
    1 + cuts.iter().filter(|&&c| value > c).count() as u8
}

/// The combined score, R×100 + F×10 + M: reads as the three digits ("545"), sorts by recency
/// first, then frequency, then spend.
pub fn combined(r: u8, f: u8, m: u8) -> f64 {
    f64::from(r) * 100.0 + f64::from(f) * 10.0 + f64::from(m)
}

/// The segments, in the order of the label's categories.
pub const SEGMENTS: [&str; 9] = [
    "champions",
    "loyal",
    "potential-loyalist",
    "new",
    "at-risk",
    "cant-lose-them",
    "hibernating",
    "lost",
    "no-purchases",
];

/// What each segment means, for explanations (same order as `SEGMENTS`).
const MEANINGS: [&str; 9] = [
    "bought recently, buy often and spend the most",
    "buy regularly and spend well",
    "recent customers with some repeat business",
    "bought recently, but little so far",
    "used to buy often and spend well, but not lately",
    "among the biggest customers, but gone quiet",
    "last bought a while ago, little and seldom",
    "long gone, and never bought much",
    "no purchases to score",
];

/// The F/M axis of the segment grid: the mean of F and M, rounded half up.
pub fn fm(f: u8, m: u8) -> u8 {
    (f + m).div_ceil(2)
}

/// The segment (an index into `SEGMENTS`) from R and FM, first match wins:
///
/// | segment | R | FM |
/// |---|---|---|
/// | champions | 4–5 | 4–5 |
/// | loyal | 3–5 | 3–5 |
/// | potential-loyalist | 4–5 | 2 |
/// | new | 4–5 | 1 |
/// | cant-lose-them | 1–2 | 5 |
/// | at-risk | 1–2 | 3–4 |
/// | hibernating | 2–3 | 1–2 |
/// | lost | 1 | 1–2 |
pub fn segment(r: u8, fm: u8) -> usize {
    if r >= 4 && fm >= 4 {
        0
    } else if r >= 3 && fm >= 3 {
        1
    } else if r >= 4 && fm == 2 {
        2
    } else if r >= 4 {
        3
    } else if r <= 2 && fm >= 5 {
        5
    } else if r <= 2 && fm >= 3 {
        4
    } else if r >= 2 {
        6
    } else {
        7
    }
}

pub fn meaning(segment: usize) -> &'static str {
    MEANINGS[segment]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quintiles_split_distinct_values_into_fifths() {
        let values: Vec<f64> = (1..=10).map(f64::from).collect();
        let cuts = quintile_cuts(values.clone());
        assert_eq!(cuts, [2.0, 4.0, 6.0, 8.0]);
        let scores: Vec<u8> = values.iter().map(|&v| quintile(v, &cuts)).collect();
        assert_eq!(scores, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        // Outside the fitted range: the ends.
        assert_eq!((quintile(-5.0, &cuts), quintile(100.0, &cuts)), (1, 5));
        assert_eq!(quintile_cuts(vec![7.0]), [7.0; 4]);
        assert_eq!(quintile_cuts(Vec::new()), [0.0; 4]);
    }

    #[test]
    fn ties_score_alike() {
        // Most customers bought once: they all get F = 1; the first three cuts are all 1, so any
        // repeat buyer is at least F = 4.
        let counts = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 5.0, 9.0];
        let cuts = quintile_cuts(counts.to_vec());
        assert_eq!(cuts, [1.0, 1.0, 1.0, 3.0]);
        let scores: Vec<u8> = counts.iter().map(|&v| quintile(v, &cuts)).collect();
        assert_eq!(scores, [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]);
    }

    #[test]
    fn the_fit_uses_only_buyers_and_the_model_round_trips() {
        let last = [10.0, f64::NAN, 30.0, 40.0, 50.0, 60.0];
        let count = [1.0, 0.0, 2.0, 3.0, 4.0, 5.0];
        let spend = [100.0, 0.0, 200.0, 300.0, 400.0, 500.0];
        let model = fit(&last, &count, &spend);
        assert_eq!(model.customers, 5);
        assert_eq!(model.recency, [10.0, 30.0, 40.0, 50.0]);
        assert_eq!(model.monetary, [100.0, 200.0, 300.0, 400.0]);
        assert_eq!(Model::decode(&model.encode()), Some(model.clone()));
        assert_eq!(Model::decode(&[]), None);
        assert_eq!(Model::decode(&model.encode()[..20]), None);
        assert_eq!(Model::decode(b"XXXX"), None);
    }

    #[test]
    fn the_combined_score_reads_as_three_digits() {
        assert_eq!(combined(5, 4, 3), 543.0);
        assert_eq!(combined(1, 1, 1), 111.0);
    }

    #[test]
    fn segments_cover_the_grid_as_documented() {
        let name = |r, f, m| SEGMENTS[segment(r, fm(f, m))];
        assert_eq!(name(5, 5, 5), "champions");
        assert_eq!(name(4, 4, 3), "champions");
        assert_eq!(name(3, 5, 5), "loyal");
        assert_eq!(name(5, 3, 3), "loyal");
        assert_eq!(name(5, 2, 2), "potential-loyalist");
        assert_eq!(name(5, 1, 1), "new");
        assert_eq!(name(1, 5, 5), "cant-lose-them");
        assert_eq!(name(2, 4, 3), "at-risk");
        assert_eq!(name(2, 1, 2), "hibernating");
        assert_eq!(name(3, 1, 1), "hibernating");
        assert_eq!(name(1, 1, 2), "lost");
        // Every cell of the grid has a segment other than "no purchases".
        for r in 1..=5 {
            for f in 1..=5 {
                assert!(segment(r, f) < SEGMENTS.len() - 1, "R {r} FM {f}");
            }
        }
        assert_eq!(fm(1, 2), 2);
        assert_eq!(fm(4, 5), 5);
    }
}
