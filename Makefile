# One entry point for everything a developer or CI runs. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
VENV := .venv
PYTHON ?= python3
WITH_MOTO := tests/support/with-moto.sh

.PHONY: help test lint fmt fmt-check clippy unit doc check-pure demo console browser stack-bins venv fuzz validate sf-tools build deploy bench

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: fmt-check clippy check-pure doc validate unit ## Everything CI checks: format, lints, purity, docs, template lint, every test

lint: fmt-check clippy ## Format check and clippy with warnings as errors

fmt: ## Format the workspace
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: venv browser ## Every test in the workspace (unit, property, integration, doc), with the moto emulator running
	@mkdir -p target
	@df -h . | awk 'NR == 2 {print "disk: " $$4 " free before the build"}'
	$(WITH_MOTO) $(CARGO) test --workspace 2>&1 | tee target/test-output.log
	$(MAKE) --no-print-directory stack-bins
	@df -h . | awk 'NR == 2 {print "disk: " $$4 " free before the end-to-end tests"}'
	$(WITH_MOTO) $(VENV)/bin/pytest -q -rfE --timeout 900 --maxfail 5 tests/sandbox/py tests/metadata tests/e2e 2>&1 | tee target/pytest-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} /^[0-9]+ passed/ {p += $$1} / failed/ && !/^test result/ {for (i = 1; i < NF; i++) if ($$(i+1) ~ /^failed/) f += $$i} \
		END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log target/pytest-output.log

# The binaries the local stack runs, each built as `cargo lambda watch` builds it (`cargo run
# --bin NAME`), so no function is compiled inside a test's first invocation.
STACK_BINS := $(patsubst functions/%/Cargo.toml,%,$(wildcard functions/*/Cargo.toml)) sandbox cm-sf-admin
stack-bins:
	@for bin in $(STACK_BINS); do $(CARGO) build --bin $$bin || exit 1; done

# The console's browser test drives Debian's chromium through chromium-driver; installed here
# (as root, as on CI) when missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "browser: $$(chromium --version 2>/dev/null | head -1)"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# Python tools (moto) in a local virtualenv; reinstalled only when the requirements change.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# ---------------------------------------------------------------- infrastructure (infra/)
STAGE ?= prod
DEPLOY_VENV := .venv-deploy
LAMBDA_DIR := target/lambda
FUNCTIONS := $(patsubst functions/%/Cargo.toml,%,$(wildcard functions/*/Cargo.toml))
AARCH64 := aarch64-unknown-linux-gnu

validate: venv sf-tools ## Lint the template (cfn-lint) and check the Salesforce metadata against SETTINGS (part of `make test`)
	$(VENV)/bin/cfn-lint infra/template.yaml
	@echo "infra/template.yaml: cfn-lint clean"
	$(CARGO) build --quiet --bin cm-sf-admin
	target/debug/cm-sf-admin --json settings fields $(SETTINGS) > target/settings-fields.json
	NODE_PATH=$(SF_TOOLS)/node_modules node infra/salesforce/tools/validate.js \
		--source infra/salesforce/force-app --out target/salesforce-mdapi --fields target/settings-fields.json

# The settings `make validate` checks the metadata against: the defaults with every engagement
# detail field on (what infra/salesforce ships); `make validate SETTINGS=my-settings.json`
# checks a deployment's own.
SETTINGS ?= infra/salesforce/settings-with-detail.json

# Salesforce's metadata library (npm), pinned by infra/salesforce/tools/package-lock.json, in a
# git-ignored folder; reinstalled only when the pins change.
SF_TOOLS := target/sf-tools
sf-tools: $(SF_TOOLS)/.installed

$(SF_TOOLS)/.installed: infra/salesforce/tools/package.json infra/salesforce/tools/package-lock.json
	mkdir -p $(SF_TOOLS)
	cp infra/salesforce/tools/package.json infra/salesforce/tools/package-lock.json $(SF_TOOLS)/
	cd $(SF_TOOLS) && npm ci --no-audit --no-fund --silent
	touch $@

build: $(VENV)/.installed-build ## Release build of every function for Lambda arm64: target/lambda/<function>/bootstrap
	rustup target list --installed | grep -qx $(AARCH64) || rustup target add $(AARCH64)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/cargo-lambda lambda build --release --arm64 \
		--lambda-dir $(LAMBDA_DIR) $(addprefix -p ,$(FUNCTIONS))
	@for f in $(FUNCTIONS); do \
		printf '%-22s %6s KiB  %s\n' $$f $$(( $$(stat -c %s $(LAMBDA_DIR)/$$f/bootstrap) / 1024 )) \
			"$$(file -b $(LAMBDA_DIR)/$$f/bootstrap 2>/dev/null | cut -d, -f1-2)"; done

$(VENV)/.installed-build: infra/requirements-build.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-build.txt
	touch $@

deploy: build $(DEPLOY_VENV)/.installed ## Build, then deploy the stack of STAGE (default prod) with sam deploy; guided the first time
	@if grep -q '^\[$(STAGE)\.deploy\.parameters\]' infra/samconfig.toml; then guided=; else \
		echo "stage $(STAGE) is not in infra/samconfig.toml: sam deploy --guided"; guided=--guided; fi; \
	$(DEPLOY_VENV)/bin/sam deploy --template-file infra/template.yaml --config-file infra/samconfig.toml \
		--config-env $(STAGE) $$guided

$(DEPLOY_VENV)/.installed: infra/requirements-deploy.txt
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements-deploy.txt
	touch $@

doc: ## API docs, warnings as errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# The rules crate stays pure: no async runtime, AWS SDK, HTTP client or Lambda crates.
check-pure:
	@if $(CARGO) tree -p mapping -e normal --prefix none | grep -E '^(tokio|aws-|reqwest|hyper|lambda)'; then \
		echo "mapping must stay pure: the crates above do I/O"; exit 1; \
	else echo "mapping is pure (no tokio, aws-*, reqwest, hyper or lambda crates)"; fi

fuzz: ## Fuzz the webhook payload parser with random input for a bounded time (5 minutes at most)
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} timeout 300 $(CARGO) test -p engine --test webhook never_panic

# Benchmarks are not tests: release builds, never part of `make test`, no timing asserted.
BENCH_WORKLOADS ?= S,M,L
BENCH_REPS ?= 3
RELEASE_DIR = $${CARGO_TARGET_DIR:-target}/release

bench: venv ## Benchmarks (release): workloads S, M, L, with and without 50 ms API latency, the naive way, cold start; writes BENCHMARKS.md
	@mkdir -p target && date +%s > target/bench.started
	$(CARGO) build --release -p bench -p sandbox $(patsubst %,-p %,$(FUNCTIONS))
	$(WITH_MOTO) $(RELEASE_DIR)/cm-sf-bench suite --workloads $(BENCH_WORKLOADS) --reps $(BENCH_REPS) --out BENCHMARKS.md

console: venv stack-bins ## The admin console on the local stack of `make demo`: prints its URL and the sandbox user to sign in as
	$(WITH_MOTO) $(VENV)/bin/python tests/e2e/console.py

demo: venv stack-bins ## The main job, locally: stand-ins for CM and SF, the emulator, the real functions; a dry run, then a sync
	$(WITH_MOTO) $(VENV)/bin/python tests/e2e/demo.py
