# lucid-sweep: the two set-up commands of README.md are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# libtorch is installed once into a cache folder outside the checkout; torch-sys finds it here.
LIBTORCH := $(shell scripts/install-libtorch.sh)
export LIBTORCH
CARGO ?= cargo
# The cargo target folder lives outside the checkout, beside libtorch, so that a fresh clone (CI) on a
# machine that built before recompiles only what changed; clippy and the tests share its artifacts.
CARGO_TARGET_DIR ?= $(or $(LUCID_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lucid-sweep)/target
export CARGO_TARGET_DIR

.PHONY: all build release demo test lint unit deploy-check services-start services-stop fixtures

all: build

build:
	$(CARGO) build --workspace --all-targets

release:
	$(CARGO) build --release --workspace --bins

# Runs the main job on the embedded default (see README.md).
demo: release
	scripts/demo.sh

# Everything CI runs: formatting, lints, every test against real services, the deployment checks.
test: lint services-start unit deploy-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

services-start:
	scripts/services.sh start all

services-stop:
	scripts/services.sh stop all

# The end-to-end tests run the workspace binaries; they are built first (tests never build or install
# anything themselves), into the same target folder and profile the tests use. scripts/exports.sh
# installs the exporter's Python environment (once), runs its tests and writes the TorchScript exports
# the Rust tests read.
EXPORTS_DIR := $(CARGO_TARGET_DIR)/exports

unit:
	$(CARGO) build --workspace --bins
	scripts/exports.sh $(EXPORTS_DIR)
	source <(scripts/services.sh env) && LUCID_EXPORTS_DIR=$(EXPORTS_DIR) $(CARGO) test --workspace --no-fail-fast

# Helm chart lint/render/validate, Grafana dashboard, Prometheus rules (promtool).
deploy-check:
	scripts/check-deploy.sh

# Dev only, not run in CI: regenerate the TensorFlow fixtures (needs Python + tensorflow-cpu).
fixtures:
	python3 tools/gen_fixtures.py
