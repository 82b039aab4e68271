"""One wrk run's output (with --latency) as one line: `requests/s p50_ms p99_ms errors`, where
errors counts non-2xx/3xx answers and socket errors (connect, read, write, timeout). Shared by
bench/http.sh and bench/soak.sh."""
import re
import sys

text = open(sys.argv[1]).read()


def ms(value):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"99%\s+(\S+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {errors}")
