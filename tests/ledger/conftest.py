"""Fixtures of the ledger tests: a real Anvil, contracts deployed through `ledger.chain.deploy`,
a scripted history on the chain, and a fresh database per test on SQLite and PostgreSQL.

Run from the repository root: ``pytest -p no:pytest-brownie tests/ledger``.
"""

from __future__ import annotations

import pytest
from web3 import Web3

from ledger.chain import LedgerClient, deploy
from tests.support import BUILD_DIR, ensure_compiled, running_anvil

from ledger_history import build_history

GENESIS = 1788220800  # 2026-09-01T00:00:00Z: the scripted history runs October to December 2026


@pytest.fixture(scope="session")
def anvil_url():
    ensure_compiled()
    with running_anvil("--timestamp", str(GENESIS), "--chain-id", "31337") as url:
        yield url


@pytest.fixture(scope="session")
def w3(anvil_url):
    return Web3(Web3.HTTPProvider(anvil_url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="session")
def deployment(w3, tmp_path_factory):
    d = deploy(w3, w3.eth.accounts[0], BUILD_DIR)
    path = tmp_path_factory.mktemp("deployments") / f"{d.chain_id}.json"
    d.save(path)
    return d


@pytest.fixture(scope="session")
def deployments_file(deployment, tmp_path_factory):
    path = tmp_path_factory.mktemp("deployments-file") / f"{deployment.chain_id}.json"
    deployment.save(path)
    return path


@pytest.fixture(scope="session")
def client(w3, deployment):
    return LedgerClient(w3, deployment, w3.eth.accounts[0])


@pytest.fixture(scope="session")
def history(w3, client):
    """The scripted history (three months of activity), built once per session."""
    return build_history(w3, client)


@pytest.fixture
def chain_snapshot(w3):
    """Rewinds the chain after a test that adds to it."""
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    yield
    w3.provider.make_request("evm_revert", [snap])


@pytest.fixture
def cli_env(monkeypatch, anvil_url, deployments_file, db_url):
    """Environment so that `ledger.cli.main` talks to the test chain and database."""
    monkeypatch.setenv("LEDGER_RPC_URL", anvil_url)
    monkeypatch.setenv("LEDGER_DEPLOYMENTS", str(deployments_file))
    monkeypatch.setenv("LEDGER_DATABASE_URL", db_url)
    monkeypatch.setenv("LEDGER_BUILD_DIR", str(BUILD_DIR))
    monkeypatch.delenv("LEDGER_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("LEDGER_TOKEN_ADDRESS", raising=False)
    return db_url
