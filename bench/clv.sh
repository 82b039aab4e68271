#!/usr/bin/env bash
# Fit time of the clv plugins' model library (plugins/clv-model, native) against the Python
# `lifetimes` package on the same simulated data, measured in one run. See BENCHMARKS.md.
#
#   bench/clv.sh [customers]        (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
customers="${1:-100000}"
out="$PWD/target/clv-bench"
venv="$PWD/target/py-clv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet lifetimes==0.11.3
fi
(cd plugins && cargo run --quiet --release -p clv-model --example clv_bench \
    --target "$(rustc -vV | sed -n 's/^host: //p')" -- "$customers" "$out" > /dev/null)
"$venv/bin/python" bench/clv_lifetimes.py "$out"
