"""The Python side of bench/clv.sh: fit lifetimes' BG/NBD and Gamma-Gamma models on the summary
CSV the Rust example wrote, time the fits, and compare with the Rust figures (rust.json)."""

import json
import sys
import time

import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter

out_dir = sys.argv[1]
data = pd.read_csv(f"{out_dir}/summary.csv")
rust = json.load(open(f"{out_dir}/rust.json"))


def best_of(n, fit):
    best, model = float("inf"), None
    for _ in range(n):
        start = time.perf_counter()
        model = fit()
        best = min(best, time.perf_counter() - start)
    return best, model


bg_s, bg = best_of(3, lambda: BetaGeoFitter().fit(data["frequency"], data["recency"], data["T"]))
# The Gamma-Gamma model as published: repeat customers, their repeat transactions' mean.
repeat = data[(data["frequency"] > 0) & (data["monetary_value"] > 0)]
gg_s, gg = best_of(3, lambda: GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"]))

print(f"customers: {len(data)} ({rust['distinct_histories']} distinct (x, t_x, T) histories); "
      f"Gamma-Gamma: {len(repeat)} repeat customers (Rust: {rust['gamma_gamma_customers']})")
print(f"{'':12} {'clv-model (Rust)':>18} {'lifetimes':>12} {'ratio':>8}")
print(f"{'BG/NBD':12} {rust['bgnbd_seconds']:>16.3f} s {bg_s:>10.3f} s {bg_s / rust['bgnbd_seconds']:>7.1f}x")
gg_ratio = gg_s / rust['gamma_gamma_seconds']
print(f"{'Gamma-Gamma':12} {rust['gamma_gamma_seconds']:>16.3f} s {gg_s:>10.3f} s {gg_ratio:>7.1f}x")
print("parameters (Rust / lifetimes):")
for name, key in [("r", "r"), ("alpha", "alpha"), ("a", "a"), ("b", "b")]:
    print(f"  {name:6} {rust['bgnbd'][name]:10.4f} {bg.params_[key]:10.4f}")
for name, key in [("p", "p"), ("q", "q"), ("gamma", "v")]:
    print(f"  {name:6} {rust['gamma_gamma'][name]:10.4f} {gg.params_[key]:10.4f}")
