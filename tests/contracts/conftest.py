"""Fixtures for the contract tests: deployments and actors (module scope), isolation per test.

Each test module gets a fresh chain (brownie's module_isolation) with the token, the work
registry and the ledger deployed once; `fn_isolation` rewinds to that state after every test.
"""

import importlib.util
from pathlib import Path

import brownie.test
import pytest
from brownie import accounts

from contract_helpers import (
    ESCROW,
    FLAT,
    FLAT_DURATION,
    FLAT_FEE,
    ISRC,
    METERED,
    METERED_DURATION,
    RATE,
    SPLIT_BPS,
    Reporter,
    register_device,
)


@pytest.fixture(autouse=True)
def isolate(fn_isolation):
    pass


@pytest.fixture(scope="module")
def deployer():
    return accounts[0]


@pytest.fixture(scope="module")
def artist():
    return accounts[1]


@pytest.fixture(scope="module")
def payees():
    """Three payees in ascending address order (the order a split lists them in)."""
    return sorted([accounts[2], accounts[3], accounts[4]], key=lambda a: int(a.address, 16))


@pytest.fixture(scope="module")
def licensee():
    return accounts[5]


@pytest.fixture(scope="module")
def licensee2():
    return accounts[6]


@pytest.fixture(scope="module")
def relayer():
    return accounts[7]


@pytest.fixture(scope="module")
def outsider():
    return accounts[8]


@pytest.fixture(scope="module")
def token(TestStablecoin, deployer):
    return TestStablecoin.deploy({"from": deployer})


@pytest.fixture(scope="module")
def forwarder(TrustedForwarder, deployer):
    """OpenZeppelin's ERC2771Forwarder, trusted by the registry and the ledger."""
    return TrustedForwarder.deploy({"from": deployer})


@pytest.fixture(scope="module")
def works(WorkRegistry, forwarder, deployer):
    return WorkRegistry.deploy(forwarder, {"from": deployer})


@pytest.fixture(scope="module")
def ledger(RoyaltyLedger, token, works, forwarder, deployer):
    return RoyaltyLedger.deploy(token, works, forwarder, {"from": deployer})


@pytest.fixture(scope="module")
def reporter(ledger, relayer):
    return Reporter(ledger, relayer)


@pytest.fixture(scope="module")
def funded(token, ledger, licensee, licensee2, outsider):
    """Licensees (and the outsider) hold tokens and have approved the ledger."""
    for who in (licensee, licensee2, outsider):
        token.mint(who, 10**12, {"from": who})
        token.approve(ledger, 2**256 - 1, {"from": who})
    return token


@pytest.fixture(scope="module")
def split(payees):
    return [p.address for p in payees], list(SPLIT_BPS)


@pytest.fixture(scope="module")
def work_id(works, ledger, artist, split):
    """A work of the artist with its split set, METERED (rate 10, 30 days) and FLAT terms."""
    tx = works.registerWork("ipfs://work-1", ISRC, {"from": artist})
    wid = tx.events["WorkRegistered"]["workId"]
    ledger.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    ledger.setTerms(wid, METERED, 0, RATE, METERED_DURATION, True, {"from": artist})
    ledger.setTerms(wid, FLAT, FLAT_FEE, 0, FLAT_DURATION, True, {"from": artist})
    return wid


@pytest.fixture(scope="module")
def work2_id(works, ledger, artist, split):
    """A second work of the artist, same split, METERED at rate 3."""
    tx = works.registerWork("ipfs://work-2", b"\x00" * 12, {"from": artist})
    wid = tx.events["WorkRegistered"]["workId"]
    ledger.setSplit(wid, split[0], split[1], [], [], {"from": artist})
    ledger.setTerms(wid, METERED, 0, 3, METERED_DURATION, True, {"from": artist})
    return wid


@pytest.fixture(scope="module")
def device(ledger, funded, licensee, work_id):
    """A GB device of `licensee`, who holds ESCROW and a METERED license on work_id."""
    ledger.deposit(ESCROW, {"from": licensee})
    ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee})
    return register_device(ledger, licensee, b"GB")


@pytest.fixture(scope="module")
def device2(ledger, funded, licensee2, work_id):
    """A FR device of `licensee2`, who holds ESCROW and a METERED license on work_id."""
    ledger.deposit(ESCROW, {"from": licensee2})
    ledger.buyLicense(work_id, METERED, 0, RATE, 0, {"from": licensee2})
    return register_device(ledger, licensee2, b"FR")


def pytest_configure(config):
    # brownie 1.22 warns on its own internal rpc.snapshot/revert calls; that is not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore:rpc\\.\\w+ should not be called directly:FutureWarning")


def _pure_python_state_machine():
    """brownie's own `state_machine` (brownie/test/stateful.py), loaded from its Python source.

    eth-brownie 1.22.2 ships that module compiled with mypyc, and the compiled factory rejects
    the machine class it generates itself ("_BrownieStateMachine object expected; got
    BrownieStateMachine"), so every stateful test fails before its first step. The source file
    next to the compiled one has the same logic without the broken type check.
    """
    source = Path(brownie.test.__file__).with_name("stateful.py")
    spec = importlib.util.spec_from_file_location("_brownie_stateful_source", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.state_machine


@pytest.fixture
def state_machine():
    """Overrides brownie's fixture of the same name (see _pure_python_state_machine)."""
    return _pure_python_state_machine()
