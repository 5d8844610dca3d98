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

.PHONY: fuzz soak play-path-coverage lint install install-python install-node install-solc install-brownie-network install-chromium compile test test-contracts test-ledger run demo bench gas clean services

install: install-python install-node install-solc install-brownie-network install-chromium services

# Python virtual environment with every pinned package and the project itself (editable).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PY_VERSION) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
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

# ruff (lint) and mypy (strict on ledger/: see pyproject.toml) on the Python code.
LINT_PATHS := ledger webapp scripts
lint: install-python
	ruff check $(LINT_PATHS)
	ruff format --check $(LINT_PATHS)
	mypy

test: install lint slither
	brownie compile >/dev/null
	brownie test tests/contracts --network contract-tests -p no:cacheprovider
	python scripts/gas_w1.py --smoke
	python -m bench.run --smoke --reuse-gas-report
	pytest -p no:pytest-brownie -p no:cacheprovider --durations=25 tests/ledger tests/e2e tests/device tests/webapp tests/browser
	$(TOOLS_VENV)/bin/python tools/api_fuzz.py

# Analysis tools in their own virtualenv: their pins (hypothesis 6.170 for schemathesis, Slither's
# tree) fight brownie's. Slither gates on High/Medium findings not in tools/slither-triage.json.
TOOLS_VENV := .venv-tools
$(TOOLS_VENV)/.installed: tools/requirements-analysis.txt
	test -x $(TOOLS_VENV)/bin/python || $(PY_VERSION) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r tools/requirements-analysis.txt
	touch $@
tools-venv: $(TOOLS_VENV)/.installed
.PHONY: tools-venv slither api-fuzz

slither: $(TOOLS_VENV)/.installed install-node install-solc
	$(TOOLS_VENV)/bin/python tools/slither_check.py

# schemathesis (fixed seed, few examples, about a minute) on the API of a throwaway Anvil + SQLite.
api-fuzz: $(TOOLS_VENV)/.installed install
	brownie compile >/dev/null
	$(TOOLS_VENV)/bin/python tools/api_fuzz.py

run: install
	DEMO="$(DEMO)" bash scripts/run.sh

# `make run` with the demo world: seeded once per devnet state, its devices playing (docs/demo.md).
demo: install
	DEMO=1 bash scripts/run.sh

# Long runs, not part of `make test`: the play path against its Solidity reference with many more
# examples, and the SIGKILL fault test over many more rounds.
FUZZ_EXAMPLES ?= 5000
SOAK_ROUNDS ?= 100
fuzz: install
	brownie compile >/dev/null
	PLAY_PATH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) brownie test tests/contracts/test_play_path_differential.py \
	  --network contract-tests -p no:cacheprovider

# Line and branch coverage of the play path's Yul (brownie's coverage cannot see inside it): the
# differential test traced opcode by opcode, mapped to source by scripts/play_path_coverage.py.
# brownie attaches to the Anvil started here (same settings as `contract-tests`, plus opcode traces).
play-path-coverage: install
	brownie compile >/dev/null
	anvil --steps-tracing --silent --accounts 10 --block-base-fee-per-gas 0 --gas-limit 30000000 --port 8548 & \
	  trap "kill $$!" EXIT; sleep 2; \
	  PLAY_PATH_COVERAGE=reports/play_path_pcs.json brownie test tests/contracts/test_play_path_differential.py \
	  --network contract-tests -p no:cacheprovider
	python scripts/play_path_coverage.py reports/play_path_pcs.json

soak: install
	brownie compile >/dev/null
	KILL_ROUNDS=$(SOAK_ROUNDS) pytest -p no:pytest-brownie -p no:cacheprovider -s tests/e2e/test_kill.py

gas: install
	python scripts/gas_w1.py

# The benchmark workloads (bench/, docs/benchmarks.md): all three, or one with W=1|2|3;
# BENCH_ARGS passes more (e.g. BENCH_ARGS='--duration 20 --conditions "quiet machine"').
W ?=
BENCH_ARGS ?=
bench: install
	brownie compile >/dev/null
	python -m bench.run $(if $(W),-w $(W)) $(BENCH_ARGS)

clean:
	rm -rf build reports .pytest_cache .hypothesis
