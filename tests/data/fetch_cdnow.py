"""Fetch the CDNOW transaction files for the clv end-to-end tests (`make setup-test` runs this).

The files ship in the `lifetimes` package's wheel on PyPI (MIT, © Cameron Davidson-Pilon; the data
are Fader & Hardie's CDNOW extract, published for research use at brucehardie.com without a
licence of their own, so the repository does not carry them). `pip download` brings the pinned
wheel; the two files are taken out of it and checked against their SHA-256.

    python3 tests/data/fetch_cdnow.py target/cdnow
"""

import glob
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "lifetimes==0.11.3"
FILES = {
    "CDNOW_sample.txt": "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a",
    "CDNOW_master.txt": "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef",
}

out = Path(sys.argv[1])
if all((out / name).exists() for name in FILES):
    sys.exit(0)
out.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                    "--no-deps", WHEEL, "-d", tmp], check=True)
    wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
    for name, sha in FILES.items():
        data = wheel.read(f"lifetimes/datasets/{name}")
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            sys.exit(f"{name}: sha256 {got}, expected {sha}")
        (out / name).write_bytes(data)
print(f"CDNOW files in {out}")
