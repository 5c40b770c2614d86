# One entry point for everything a developer or CI runs. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
VENV := .venv
PYTHON ?= python3
WITH_MOTO := tests/support/with-moto.sh

.PHONY: help test lint fmt fmt-check clippy unit doc check-pure demo venv fuzz

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

test: fmt-check clippy check-pure doc unit ## Everything CI checks: format, lints, purity, docs, every test

lint: fmt-check clippy ## Format check and clippy with warnings as errors

fmt: ## Format the workspace
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: venv ## Every test in the workspace (unit, property, integration, doc), with the moto emulator running
	@mkdir -p target
	$(WITH_MOTO) $(CARGO) test --workspace 2>&1 | tee target/test-output.log
	$(CARGO) build -p sandbox -p admin
	$(WITH_MOTO) $(VENV)/bin/pytest -q tests/sandbox/py tests/e2e 2>&1 | tee target/pytest-output.log
	@awk '/^test result:/ {p += $$4; f += $$6} /^[0-9]+ passed/ {p += $$1} / failed/ && !/^test result/ {for (i = 1; i < NF; i++) if ($$(i+1) ~ /^failed/) f += $$i} \
		END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log target/pytest-output.log

# Python tools (moto) in a local virtualenv; reinstalled only when the requirements change.
venv: $(VENV)/.installed

$(VENV)/.installed: tests/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
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

demo: venv ## The main job, locally: stand-ins for CM and SF, the emulator, the real functions; a dry run, then a sync
	$(CARGO) build -p sandbox -p admin
	$(WITH_MOTO) $(VENV)/bin/python tests/e2e/demo.py
