"""Helpers of the portal tests (a module with its own name, so test modules never import a
`conftest` that another suite's conftest may shadow)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from ledger.config import Settings
from webapp import create_app
from webapp.settings import PortalSettings

PASSWORD = "correct horse battery"
SECRET = "test-secret-" + "x" * 40


def make_app(engine, **portal):
    settings = Settings.from_env().with_(rpc_url="http://127.0.0.1:9", database_url=str(engine.url))
    defaults = dict(
        secret_key=SECRET, rate_login="1000 per minute", rate_signup="1000 per minute", rate_token="1000 per minute"
    )
    defaults.update(portal)
    return create_app(
        {
            "TESTING": True,
            "LEDGER_SETTINGS": settings,
            "LEDGER_ENGINE": engine,
            "PORTAL_SETTINGS": PortalSettings(**defaults),
        }
    )


def csrf_of(html: bytes | str) -> str:
    text = html.decode() if isinstance(html, bytes) else html
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', text) or re.search(
        r'name="csrf-token" content="([^"]+)"', text
    )
    assert m, "no CSRF token on the page"
    return m.group(1)


class Portal:
    """Drives the portal like a browser: reads each form's CSRF token before posting it."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()

    def get(self, path, **kw):
        return self.client.get(path, **kw)

    def post_form(self, path, data, form_page=None):
        token = csrf_of(self.client.get(form_page or path).data)
        return self.client.post(path, data={**data, "csrf_token": token})

    def login(self, username, password=PASSWORD):
        return self.post_form("/login", {"username": username, "password": password})


# ----------------------------------------------------------------------------- a forwarder world

ROOT = Path(__file__).resolve().parents[2]
OZ_BUILD = ROOT / "node_modules" / "@openzeppelin" / "contracts" / "build" / "contracts"


def compile_gasless_target() -> tuple[list[Any], str]:
    """ABI and bytecode of tests/webapp/contracts/GaslessTarget.sol (solc-js through the shim)."""
    source = (ROOT / "tests" / "webapp" / "contracts" / "GaslessTarget.sol").read_text()
    request = {
        "language": "Solidity",
        "sources": {"GaslessTarget.sol": {"content": source}},
        "settings": {
            "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
            "evmVersion": "cancun",
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    out = subprocess.run(
        ["node", str(ROOT / "tools" / "solc" / "solc.js"), "--standard-json"],
        cwd=ROOT,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    doc = json.loads(out.stdout)
    errors = [e for e in doc.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    c = doc["contracts"]["GaslessTarget.sol"]["GaslessTarget"]
    return c["abi"], "0x" + c["evm"]["bytecode"]["object"]


def deploy_contract(w3: Any, abi: list[Any], bytecode: str, *args: Any) -> str:
    tx = w3.eth.contract(abi=abi, bytecode=bytecode).constructor(*args).transact({"from": w3.eth.accounts[0]})
    return str(w3.eth.wait_for_transaction_receipt(tx)["contractAddress"])


def deploy_gasless_world(w3: Any, forwarder_name: str) -> tuple[Any, Any]:
    """OpenZeppelin's compiled ERC2771Forwarder and a GaslessTarget trusting it, as a Deployment in
    which the target stands for WorkRegistry and RoyaltyLedger; (deployment, target contract)."""
    from ledger.chain import ContractInfo, Deployment, token_interface_abi
    from tests.support import BUILD_DIR

    target_abi, target_code = compile_gasless_target()
    forwarder = json.loads((OZ_BUILD / "ERC2771Forwarder.json").read_text())
    forwarder_address = deploy_contract(w3, forwarder["abi"], forwarder["bytecode"], forwarder_name)
    target = deploy_contract(w3, target_abi, target_code, forwarder_address)
    deployment = Deployment(
        w3.eth.chain_id,
        0,
        w3.eth.accounts[0],
        {
            "Token": ContractInfo(target, token_interface_abi(BUILD_DIR)),
            "WorkRegistry": ContractInfo(target, target_abi),
            "RoyaltyLedger": ContractInfo(target, target_abi),
            "TrustedForwarder": ContractInfo(forwarder_address, forwarder["abi"]),
        },
    )
    return deployment, w3.eth.contract(address=target, abi=target_abi)


# ----------------------------------------------------------------------------- index rows
# What the seed modules (portal_seed, licensee_seed, devices_seed) write, as the indexer writes it.


class Events:
    """Positions of indexed events: block, log index, a transaction hash made from the block, and
    the time. With ``block_each`` every event is in a block of its own (log index 0); without,
    events share the current block (``next_block`` moves on) and number their logs."""

    def __init__(self, block: int, block_each: bool = False) -> None:
        self.block, self.log, self.block_each = block, 0, block_each

    def next_block(self) -> int:
        self.block += 1
        return self.block

    def __call__(self, t: int) -> dict[str, Any]:
        if self.block_each:
            self.next_block()
        else:
            self.log += 1
        return event(self.block, t, self.log)


def event(block: int, t: int, log_index: int = 0) -> dict[str, Any]:
    return {"block_number": block, "log_index": log_index, "tx_hash": "0x" + f"{block:064x}", "timestamp": t}


def work_row(
    work_id: int,
    owner: str,
    title: str,
    registered_at: int,
    registered_block: int = 100,
    isrc: str | None = None,
    iswc: str | None = None,
) -> Any:
    """A registered work with no plays, accruals or distributions yet (registrant = owner)."""
    from ledger.models import Work

    return Work(
        work_id=work_id,
        owner=owner,
        registrant=owner,
        isrc=isrc,
        iswc=iswc,
        title=title,
        uri="data:",
        registered_block=registered_block,
        registered_at=registered_at,
        split_locked=False,
        plays=0,
        licensed_plays=0,
        accrued=0,
        distributed=0,
    )


def license_rows(
    e: dict[str, Any],
    licensee: str,
    work_id: int,
    kind: int,
    fee: int,
    rate: int,
    expiry: int,
    period: int,
    updated_block: int,
) -> list[Any]:
    """A license held and the purchase event (at ``e``) that bought it."""
    from ledger.models import License, LicensePurchase

    terms = dict(licensee=licensee, work_id=work_id, kind=kind, rate_per_play=rate, expiry=expiry)
    return [
        License(**terms, fees_paid=fee, updated_block=updated_block),
        LicensePurchase(**e, **terms, fee=fee, period=period),
    ]


def device_row(device_id: int, address: str, licensee: str, territory: str, registered_block: int, at: int) -> Any:
    from ledger.models import Device

    return Device(
        device_id=device_id,
        address=address,
        licensee=licensee,
        territory=territory,
        registered_block=registered_block,
        registered_at=at,
        revoked=False,
    )


def batch_row(
    e: dict[str, Any],
    device_id: int,
    nonce: int,
    from_time: int,
    to_time: int,
    charged: int,
    plays: int,
    period: int,
    entries: int = 1,
    licensee_index: int | None = None,
) -> Any:
    """A play batch on chain, the first of its transaction (batch index 0)."""
    from ledger.models import PlayBatch

    return PlayBatch(
        **e,
        batch_index=0,
        device_id=device_id,
        licensee_index=device_id >> 32 if licensee_index is None else licensee_index,
        nonce=nonce,
        from_time=from_time,
        to_time=to_time,
        charged=charged,
        entries=entries,
        plays=plays,
        period=period,
    )


def play_row(
    e: dict[str, Any], work_id: int, device_id: int, count: int, licensed: bool, rate: int, territory: str, period: int
) -> Any:
    """A work's plays in the batch at ``e``: charged at ``rate`` when licensed, else at $0."""
    from ledger.models import Play

    rate = rate if licensed else 0
    return Play(
        block_number=e["block_number"],
        log_index=e["log_index"],
        batch_index=0,
        work_id=work_id,
        device_id=device_id,
        count=count,
        licensed=licensed,
        rate=rate,
        amount=count * rate,
        territory=territory,
        period=period,
    )
