"""Reference values from Python's `lifetimes` 0.11.3 on the CDNOW sample, for the clv-model tests
(`tests` in src/lib.rs quote this script's output).

    python3 -m venv target/py-clv && target/py-clv/bin/pip install lifetimes==0.11.3
    target/py-clv/bin/python plugins/clv-model/reference/lifetimes_cdnow.py [CDNOW_sample.txt]

The summary is Fader & Hardie's: calibration to 1997-09-30, transactions are distinct purchase
days, time in weeks measured in whole days (freq "D", freq_multiplier 7), the monetary value the
mean of the repeat days' totals (the first day excluded, lifetimes' default)."""

import sys
from pathlib import Path

import lifetimes
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path = sys.argv[1] if len(sys.argv) > 1 else Path(lifetimes.__file__).parent / "datasets/CDNOW_sample.txt"
sample = "sample" in str(path)
names = ["customer", "index", "date", "cds", "value"] if sample else ["customer", "date", "cds", "value"]
tx = pd.read_csv(path, sep=r"\s+", header=None, names=names, skiprows=0 if sample else 1)
tx["date"] = pd.to_datetime(tx["date"].astype(str), format="%Y%m%d")
tx = tx.groupby(["customer", "date"], as_index=False)["value"].sum()
summary = summary_data_from_transaction_data(
    tx, "customer", "date", monetary_value_col="value", observation_period_end="1997-09-30",
    freq="D", freq_multiplier=7,
)
bg = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
print(f"customers {len(summary)}, repeat customers with positive mean {len(repeat)}")
print("bgnbd", {k: float(v) for k, v in bg.params_.items()})
print("gamma_gamma", {k: float(v) for k, v in gg.params_.items()})
print("population mean", gg.params_["p"] * gg.params_["v"] / (gg.params_["q"] - 1))
if sample:
    chosen = summary.iloc[::200].head(12)
    p_alive = bg.conditional_probability_alive(chosen["frequency"], chosen["recency"], chosen["T"])
    purchases = bg.conditional_expected_number_of_purchases_up_to_time(
        39, chosen["frequency"], chosen["recency"], chosen["T"])
    value = gg.conditional_expected_average_profit(chosen["frequency"], chosen["monetary_value"])
    p_alive, purchases, value = (list(map(float, v)) for v in (p_alive, purchases, value))
    print("customer, x, recency_days, T_days, monetary_value, p_alive, expected_purchases_39, expected_value")
    for i, (cid, row) in enumerate(chosen.iterrows()):
        print(f"({cid}, {row['frequency']:.0f}, {row['recency'] * 7:.0f}, {row['T'] * 7:.0f}, "
              f"{float(row['monetary_value'])!r}, {p_alive[i]!r}, {purchases[i]!r}, {value[i]!r}),")
