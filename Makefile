# Royalty ledger: one command to run, one to test. Everything installs itself (idempotent).
SHELL := /bin/bash
PY_VERSION ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SOLC_VERSION := 0.8.28
SOLC_DIR := $(CURDIR)/.solc
SOLC_EXE := $(SOLC_DIR)/solc-v$(SOLC_VERSION)
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export SOLCX_BINARY_PATH := $(SOLC_DIR)

.PHONY: install install-python install-node install-solc install-brownie-network install-chromium compile test test-contracts test-ledger run bench gas clean services

install: install-python install-node install-solc install-brownie-network install-chromium services

# Python virtual environment with every pinned package and the project itself (editable).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PY_VERSION) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@
install-python: $(VENV)/.installed

# solc-js, Anvil and OpenZeppelin, exactly as package-lock.json pins them.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@
install-node: node_modules/.installed

# The solc-js shim, installed where py-solc-x (and so brownie) looks for a native compiler.
$(SOLC_EXE): tools/solc/solc.js node_modules/.installed
	mkdir -p $(SOLC_DIR)
	printf '#!/bin/sh\nexec node "%s/tools/solc/solc.js" "$$@"\n' "$(CURDIR)" > $@
	chmod +x $@
	$@ --version | grep -q "$(SOLC_VERSION)"
install-solc: $(SOLC_EXE)

# brownie's `development` network is Anvil; give it a 30M block gas limit like mainnet. The
# `bench` and `contract-tests` networks are the same on their own ports, so neither meets the
# devnet of `make run` (8545) nor each other.
install-brownie-network: install-python
	@brownie networks modify development gas_limit=30000000 >/dev/null
	@brownie networks list 2>/dev/null | grep -q "bench" || brownie networks add Development bench \
	  cmd=anvil host=http://127.0.0.1 port=8547 gas_limit=30000000 accounts=10 base_fee=0 >/dev/null
	@brownie networks list 2>/dev/null | grep -q "contract-tests" || brownie networks add Development \
	  contract-tests cmd=anvil host=http://127.0.0.1 port=8548 gas_limit=30000000 accounts=10 base_fee=0 >/dev/null

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
install-chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "WARNING: could not install chromium"; \
	fi

# PostgreSQL and Mosquitto run on every machine of ours; start them if they are down.
services:
	@bash scripts/services.sh

compile: install
	brownie compile

test: install
	brownie compile >/dev/null
	brownie test tests/contracts --network contract-tests -p no:cacheprovider
	python scripts/gas_w1.py --smoke
	pytest -p no:pytest-brownie -p no:cacheprovider tests/ledger tests/e2e tests/device tests/webapp tests/browser

run: install
	bash scripts/run.sh

gas: install
	python scripts/gas_w1.py

bench: install gas
	python scripts/bench_report.py

clean:
	rm -rf build reports .pytest_cache .hypothesis
