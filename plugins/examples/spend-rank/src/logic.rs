//! The scoring arithmetic, free of the SDK: the host's benchmark compiles this same file natively
//! to compare against the plugin.

const DAY_MS: f64 = 86_400_000.0;

/// Decile cut points of spend over the whole organization (the fitted "model").
pub fn fit(spend: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = spend.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return vec![0.0; 9];
    }
    (1..10).map(|d| sorted[(sorted.len() * d / 10).min(sorted.len() - 1)]).collect()
}

/// The model as bytes: the cut points, little-endian f64s.
pub fn encode(cuts: &[f64]) -> Vec<u8> {
    cuts.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// The cut points of a model, if it is one (9 of them).
pub fn decode(model: &[u8]) -> Option<Vec<f64>> {
    (model.len() == 9 * 8).then(|| model.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect())
}

/// Per customer: spend in currency units, decile 1-10, days since last purchase (NaN if none).
pub fn score(
    spend_minor: &[f64],
    last_at: &[f64],
    now: f64,
    cuts: &[f64],
    spend: &mut [f64],
    rank: &mut [f64],
    recency: &mut [f64],
) {
    for i in 0..spend_minor.len() {
        let s = spend_minor[i];
        spend[i] = s / 100.0;
        rank[i] = 1.0 + cuts.iter().filter(|&&c| s > c).count() as f64;
        recency[i] = (now - last_at[i]) / DAY_MS;
    }
}

/// The tier labels, in code order.
pub const TIERS: [&str; 3] = ["bronze", "silver", "gold"];

/// The tier of a spend decile, as an index into [`TIERS`].
pub fn tier(rank: f64) -> u32 {
    if rank >= 9.0 {
        2
    } else if rank >= 6.0 {
        1
    } else {
        0
    }
}
