# dra-kwok-driver: every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# One release of each supported Kubernetes minor, oldest first (the default, in hack/versions.env,
# is the newest); `make test-versions` runs the `versions` tests on each, `make test` on the oldest.
KUBE_VERSIONS := 1.34.4 1.35.4 1.36.3 1.37.2
KUBE_OLDEST := $(firstword $(KUBE_VERSIONS))
# The oldest minor with binding conditions and device taints on by default: the `simulation`
# tests run there too (and on the default version with everything else).
KUBE_SIMULATION := 1.36.3
# The local Go unless the caller sets GOTOOLCHAIN (e.g. `export GOTOOLCHAIN=go1.27.3` for a newer
# Go, which the go command fetches from the module proxy); the hack scripts do the same.
GOTOOLCHAIN ?= local
export GOTOOLCHAIN
# The Karpenter release of the slow end-to-end tests and the Go it is built with (defaults in
# hack/versions.env: 1.15.0 with go1.27.3); the previous one: KARPENTER_VERSION=1.14.1
# KARPENTER_GOTOOLCHAIN=local.
export KARPENTER_VERSION KARPENTER_GOTOOLCHAIN

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the Python virtual environment with the project and its dev tools.

.PHONY: binaries
binaries: ## Build (or reuse from cache) etcd, kube-*, kubectl, kwok, kwokctl and helm from Go modules (KUBE_VERSION=1.34.x-1.37.x).
	@hack/cluster.sh settings >/dev/null # an unsupported KUBE_VERSION is refused before minutes of building
	@hack/build-binaries.sh

.PHONY: karpenter
karpenter: ## Build (or reuse from cache) Karpenter's KWOK provider (karpenter-kwok) for the e2e test; not in `binaries`.
	@hack/build-binaries.sh karpenter

.PHONY: cluster
cluster: binaries ## Start the local DRA-capable KWOK cluster (.cluster/kubeconfig, .cluster/bin).
	@hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Remove the local cluster.
	@hack/cluster.sh down

# The import contracts are in pyproject.toml ([tool.importlinter]): the layers cli > crd > shell >
# core and a core without I/O libraries (--no-cache: no .import_linter_cache in the checkout).
# shellcheck reads every shell script in hack/ and .ci/ (found by its #! line), -x following
# `source hack/versions.env`.
.PHONY: lint
lint: venv ## ruff, mypy (strict), the import layers (lint-imports) and shellcheck.
	$(VENV)/bin/ruff check controller tests benchmarks
	$(VENV)/bin/ruff format --check controller tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict benchmarks
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/shellcheck -x $$(awk 'FNR == 1 && /^#!.*[\/ ](ba|da)?sh( |$$)/ { print FILENAME }' hack/* .ci/*)

.PHONY: test-unit
test-unit: venv ## Unit tests of the pure core (no cluster).
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test
test: venv binaries lint chart-lint ## Everything CI runs: lint, unit tests, the tests against a real local cluster, the `versions` tests on the oldest minor and the `simulation` tests on 1.36.
	$(PY) -m pytest -m 'not slow' $(PYTEST_ARGS)
	@echo "make test: the versions tests on Kubernetes $(KUBE_OLDEST), the oldest supported"
	@KUBE_VERSION=$(KUBE_OLDEST) hack/build-binaries.sh
	env -u DRA_KWOK_KUBECONFIG KUBE_VERSION=$(KUBE_OLDEST) $(PY) -m pytest -m 'versions and not slow' $(PYTEST_ARGS)
	@echo "make test: the simulation tests on Kubernetes $(KUBE_SIMULATION)"
	@KUBE_VERSION=$(KUBE_SIMULATION) hack/build-binaries.sh
	env -u DRA_KWOK_KUBECONFIG KUBE_VERSION=$(KUBE_SIMULATION) $(PY) -m pytest -m 'simulation and not slow' $(PYTEST_ARGS)

.PHONY: test-versions
test-versions: venv ## The `versions` tests (DRA features, smoke, demo) on 1.34.4, 1.35.4, 1.36.3 and 1.37.2, building each; a line per version.
	@failed=""; summary=(); \
	for v in $(KUBE_VERSIONS); do \
	  start=$$SECONDS; result=passed; tests=0; \
	  if KUBE_VERSION=$$v hack/build-binaries.sh; then \
	    build=$$((SECONDS - start)); \
	    env -u DRA_KWOK_KUBECONFIG KUBE_VERSION=$$v $(PY) -m pytest -m versions $(PYTEST_ARGS) || result=FAILED; \
	    tests=$$((SECONDS - start - build)); \
	  else build=$$((SECONDS - start)); result="FAILED (build)"; fi; \
	  summary+=("$$(printf 'Kubernetes %-7s %-15s tests %5ss   build %5ss' $$v "$$result" $$tests $$build)"); \
	  echo "test-versions: $${summary[-1]}"; \
	  [ "$$result" = passed ] || failed="$$failed $$v"; \
	done; \
	echo "test-versions:"; printf '  %s\n' "$${summary[@]}"; \
	if [ -n "$$failed" ]; then echo "test-versions: failed on:$$failed" >&2; exit 1; fi

.PHONY: test-slow
test-slow: venv binaries karpenter ## The long fault, fuzzing and Karpenter end-to-end tests.
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

.PHONY: fmt
fmt: venv ## Format and auto-fix.
	$(VENV)/bin/ruff format controller tests benchmarks
	$(VENV)/bin/ruff check --fix controller tests benchmarks

CRD_FILE := crds/test.karpenter.sh_dranodeoverlays.yaml
CHART := charts/dra-kwok-driver

.PHONY: crds
crds: venv ## Regenerate the DRANodeOverlay CRD in crds/ (and the chart's copy) from controller/dra_kwok/crd.py.
	$(PY) -c 'from dra_kwok.crd import render_crd_yaml; print(render_crd_yaml(), end="")' > $(CRD_FILE).tmp
	mv $(CRD_FILE).tmp $(CRD_FILE)
	mkdir -p $(CHART)/crds
	cp $(CRD_FILE) $(CHART)/crds/

PROFILES_FILE := $(CHART)/files/profile-device-classes.yaml
VALUES_SCHEMA := $(CHART)/values.schema.json

.PHONY: profiles
profiles: venv ## Regenerate the chart's profile DeviceClasses (files/) and the schema's profile names from core/profiles.
	mkdir -p $(CHART)/files
	$(PY) -c 'from dra_kwok.core.profiles.catalog import chart_device_classes_yaml; print(chart_device_classes_yaml(), end="")' > $(PROFILES_FILE).tmp
	mv $(PROFILES_FILE).tmp $(PROFILES_FILE)
	$(PY) -c 'import sys; from dra_kwok.core.profiles.catalog import values_schema_with_profiles; print(values_schema_with_profiles(sys.stdin.read()), end="")' < $(VALUES_SCHEMA) > $(VALUES_SCHEMA).tmp
	mv $(VALUES_SCHEMA).tmp $(VALUES_SCHEMA)

.PHONY: chart-lint
chart-lint: venv ## helm lint --strict the chart (default and example values); validate the values and the rendered ConfigMap.
	@set -o pipefail; \
	helm="$$(hack/build-binaries.sh --print-bindir helm)/helm"; \
	test -x "$$helm" || { echo "no helm at $$helm: run 'make binaries'" >&2; exit 1; }; \
	for values in $(CHART)/values.yaml $(CHART)/examples/*.yaml; do \
	  "$$helm" lint --strict $(CHART) -f $$values || exit 1; \
	  $(VENV)/bin/dra-kwok validate -q $$values || exit 1; \
	  "$$helm" template lint $(CHART) -f $$values | $(VENV)/bin/dra-kwok validate -q - \
	    || { echo "chart-lint: $$values: helm template or the validation of its output failed" >&2; exit 1; }; \
	done

.PHONY: demo
demo: venv binaries ## The five-minute demo: cluster, chart, driver, KWOK nodes, DRA workloads, a table.
	@$(PY) hack/demo.py up

.PHONY: demo-table
demo-table: ## Print the demo's table of nodes, devices and allocations again.
	@$(PY) hack/demo.py table

.PHONY: demo-down
demo-down: ## Stop the demo's driver and delete the local cluster.
	@$(PY) hack/demo.py down

.PHONY: bench
bench: venv binaries ## Benchmarks (cluster scenarios on a fresh local cluster, and micro): a table and docs/benchmarks.md.
	$(PY) -m benchmarks $(BENCH_ARGS)

.PHONY: bench-micro
bench-micro: venv ## Micro-benchmarks of the pure core only (pytest-benchmark, no cluster).
	$(PY) -m pytest benchmarks/micro -p no:cacheprovider --benchmark-only $(PYTEST_ARGS)
