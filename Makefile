# The README's two commands: `make run` and `make test`. Both install what they need first.
.PHONY: setup run test bench plugins

PLUGINS_TARGET := $(CURDIR)/target/plugins
WASM := $(PLUGINS_TARGET)/wasm32-wasip2/release
RAPPORT := $(CURDIR)/target/release/rapport

setup:
	rustup target add wasm32-wasip2

# Build the example plugins from source (each with its own `cargo build -p`: see ARCHITECTURE.md).
plugins: setup
	cd plugins && for p in require-contact spend-rank customers-by-branch branch-standard; do \
		CARGO_TARGET_DIR=$(PLUGINS_TARGET) cargo build --quiet --release -p $$p || exit 1; \
	done

# Build Rapport and the example plugins, check and run each plugin locally on the demo store, and
# generate a demo organization into ./rapport-data (re-running imports nothing new).
run: plugins
	cargo build --release -p rapport
	$(RAPPORT) plugin check $(WASM)/require_contact.wasm
	$(RAPPORT) plugin check $(WASM)/spend_rank.wasm
	$(RAPPORT) plugin check $(WASM)/customers_by_branch.wasm
	$(RAPPORT) plugin check $(WASM)/branch_standard.wasm
	$(RAPPORT) plugin run $(WASM)/require_contact.wasm --input plugins/examples/require-contact/input.json
	$(RAPPORT) plugin run $(WASM)/spend_rank.wasm --input plugins/examples/spend-rank/input.json \
		--fixture plugins/examples/demo-store.json --config plugins/examples/spend-rank/config.json
	$(RAPPORT) plugin run $(WASM)/customers_by_branch.wasm --input plugins/examples/customers-by-branch/input.json \
		--fixture plugins/examples/demo-store.json
	$(RAPPORT) plugin run $(WASM)/branch_standard.wasm --input plugins/examples/branch-standard/input.json \
		--fixture plugins/examples/demo-store.json
	$(RAPPORT) demo --customers 2000 --data rapport-data
	$(RAPPORT) org list --data rapport-data

# Every test: host, plugins built from source, CLI end to end.
test: setup
	cargo test --workspace

bench: setup
	cargo bench -p rapport --bench runtime
