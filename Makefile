# The README's two commands: `make run` and `make test`. Both install what they need first.
.PHONY: setup run test bench bench-http plugins

PLUGINS_TARGET := $(CURDIR)/target/plugins
WASM := $(PLUGINS_TARGET)/wasm32-wasip2/release
RAPPORT := $(CURDIR)/target/release/rapport
DEMO_PLUGINS := $(CURDIR)/target/demo-plugins
DEMO_WASM := require_contact.wasm spend_rank.wasm customers_by_branch.wasm branch_standard.wasm

PY := $(CURDIR)/target/py/bin/python

# The wasm target for plugins; the OpenAPI initiative's validator and schemathesis for the API
# contract tests.
setup:
	rustup target add wasm32-wasip2
	test -x $(PY) || python3 -m venv $(CURDIR)/target/py
	$(PY) -m pip install --quiet --disable-pip-version-check openapi-spec-validator==0.9.0 schemathesis==4.32.5

# Build the example plugins from source (each with its own `cargo build -p`: see ARCHITECTURE.md).
plugins: setup
	cd plugins && for p in require-contact spend-rank customers-by-branch branch-standard; do \
		CARGO_TARGET_DIR=$(PLUGINS_TARGET) cargo build --quiet --release -p $$p || exit 1; \
	done

# Build Rapport and the example plugins, then serve the admin API on 127.0.0.1:8080 with a demo
# organization (generated customers, a sponsor tree, purchase history; the example plugins
# installed and enabled). It prints the URL, the docs page and an owner key. Ctrl-C stops it.
run: plugins
	cargo build --release -p rapport
	rm -rf $(DEMO_PLUGINS) && mkdir -p $(DEMO_PLUGINS)
	cp $(addprefix $(WASM)/,$(DEMO_WASM)) $(DEMO_PLUGINS)/
	$(RAPPORT) serve --data rapport-data --demo true --demo-plugins $(DEMO_PLUGINS)

# Every test: host, plugins built from source, CLI end to end.
test: setup
	cargo test --workspace

bench: setup
	cargo bench -p rapport --bench runtime

# HTTP load with wrk (Debian's package): Rapport against a bare axum + rusqlite server.
bench-http: plugins
	command -v wrk >/dev/null || sudo apt-get install -y wrk || apt-get install -y wrk
	cargo build --release -p rapport --bin rapport --example bare_http
	bash bench/http.sh
