"""End-to-end fixtures: a real Anvil, the compiled contracts, SQLite and PostgreSQL, Mosquitto,
the API app serving POST /api/v1/batches, and the device script as a subprocess."""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from eth_account import Account
from sqlalchemy import func, select
from web3 import Web3

from ledger import playbatch
from ledger.chain import LedgerClient, LicenseKind, deploy
from ledger.db import session_factory
from ledger.ingest import IngestContext
from ledger.pending import PendingBatch
from ledger.relayer import Relayer, RelayerConfig
from tests.support import BUILD_DIR, DEVICE_SCRIPT, MQTT_HOST, MQTT_PORT, ensure_compiled, free_port
from tests.support import running_anvil as _running_anvil

BUILD = BUILD_DIR
#: This test run's own MQTT topics, so runs sharing the machine's broker never answer each other's devices.
TOPIC_PREFIX = f"test-{uuid.uuid4().hex[:12]}/plays"

RATE = 1_000  # units per play (0.001 of a 6-decimal stablecoin)
ESCROW = 50_000_000
BPS = [5_000, 3_000, 2_000]


@contextlib.contextmanager
def running_anvil():
    """An Anvil on a free port, stopped on exit; yields a Web3 for it."""
    with _running_anvil() as url:
        yield Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def anvil():
    with running_anvil() as w3:
        yield w3


@dataclass
class World:
    """The chain after setup: 3 works (1 and 2 licensed by the licensee, 3 not), payees, escrow."""

    w3: Web3
    deployment: object
    admin: LedgerClient
    licensee: LedgerClient
    works: list[int]
    payees: list[str]
    relayer_account: object
    snapshot: str = ""
    devices: list = field(default_factory=list)

    @property
    def ledger_address(self) -> str:
        return self.deployment.ledger.address

    def licensed(self) -> list[int]:
        return self.works[:2]


@pytest.fixture(scope="session")
def base_world(anvil):
    ensure_compiled()
    w3 = anvil
    admin_addr, licensee_addr, *rest = w3.eth.accounts
    deployment = deploy(w3, admin_addr, BUILD)
    admin = LedgerClient(w3, deployment, admin_addr)
    licensee = admin.as_account(licensee_addr)
    payees = [Account.create().address for _ in range(3)]
    works = []
    for i in range(3):
        work = admin.register_work(title=f"Song {i}")
        admin.set_split(work, payees, BPS, current=([], []))
        admin.set_terms(work, LicenseKind.METERED, 0, RATE, 365 * 86400)
        works.append(work)
    admin.mint(licensee_addr, 10 * ESCROW)
    for work in works[:2]:
        licensee.buy_license(work, LicenseKind.METERED)
    licensee.deposit(ESCROW)
    relayer_account = Account.create()
    w3.provider.make_request("anvil_setBalance", [relayer_account.address, hex(10**20)])
    return World(w3, deployment, admin, licensee, works, payees, relayer_account)


@pytest.fixture
def world(base_world):
    """The base world, rewound after the test (Anvil snapshot)."""
    w3 = base_world.w3
    snap = w3.provider.make_request("evm_snapshot", [])["result"]
    yield base_world
    w3.provider.make_request("evm_revert", [snap])
    # A test may have moved the chain's clock forward (an escrow notice waited out): put it back
    # on the wall clock, or later tests' batches (signed with wall-clock times) would look old.
    w3.provider.make_request("evm_setTime", [int(time.time())])


# ----------------------------------------------------------------------------- databases


def stored(engine) -> list[PendingBatch]:
    with session_factory(engine)() as s:
        return list(s.scalars(select(PendingBatch).order_by(PendingBatch.id)))


def stored_count(engine) -> int:
    with session_factory(engine)() as s:
        return s.scalar(select(func.count()).select_from(PendingBatch))


# ----------------------------------------------------------------------------- ingest servers


class HttpIngestServer:
    """The real API app (webapp.create_app) on a werkzeug server in a thread, with the test's
    ingest context; stop() / start() on the same port."""

    def __init__(self, ctx: IngestContext, port: int | None = None):
        from webapp import create_app

        self.ctx = ctx
        self.port = port or free_port()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.app = create_app({"INGEST_CONTEXT": ctx})
        self.server = None
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/batches"

    def start(self):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)
            self.server = None


def make_ctx(world: World, engine, **kw) -> IngestContext:
    return IngestContext.create(world.w3, world.deployment, engine, **kw)


@pytest.fixture
def http_server(world, engine):
    server = HttpIngestServer(make_ctx(world, engine)).start()
    yield server
    server.stop()


@pytest.fixture
def mqtt_consumer_factory(world):
    from ledger.mqtt import MqttIngest

    started = []

    def make(engine, client_id=None, **ctx_kw):
        consumer = MqttIngest(
            make_ctx(world, engine, **ctx_kw),
            f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            topic_prefix=TOPIC_PREFIX,
            client_id=client_id or f"e2e-ingest-{uuid.uuid4().hex[:10]}",
        )
        consumer.start()
        started.append(consumer)
        return consumer

    yield make
    for consumer in started:
        try:
            consumer.stop()
        except Exception:  # noqa: BLE001
            pass


# ----------------------------------------------------------------------------- devices


class DeviceProc:
    """scripts/device.py run as a device would run it, in its own state directory."""

    def __init__(self, state: pathlib.Path):
        self.state = state
        self.address = ""
        self.device_id = 0

    def cmd(self, *args, timeout=120, check=True, timeout_flag="5") -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [
                sys.executable,
                str(DEVICE_SCRIPT),
                "--state",
                str(self.state),
                "--quiet",
                "--timeout",
                timeout_flag,
                *map(str, args),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode not in (0, 3):
            raise AssertionError(f"device.py {' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def popen(self, *args) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                str(DEVICE_SCRIPT),
                "--state",
                str(self.state),
                "--quiet",
                "--timeout",
                "5",
                *map(str, args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def provision(self, world: World, transport: str, endpoint: str = "", mqtt_url: str = ""):
        (self.state / "provisioning.json").write_text(
            json.dumps(
                {
                    "device": self.address,
                    "deviceId": str(self.device_id),
                    "licensee": world.licensee.address,
                    "transport": transport,
                    "endpoint": endpoint,
                    "mqttUrl": mqtt_url,
                    "mqttTopicPrefix": TOPIC_PREFIX,
                    "chainId": world.w3.eth.chain_id,
                    "ledger": world.ledger_address,
                }
            )
        )

    def status(self) -> dict:
        return json.loads(self.cmd("status", "--json").stdout)

    @property
    def account(self):
        return Account.from_key(json.loads((self.state / "key.json").read_text())["privateKey"])


@pytest.fixture
def new_device(world, tmp_path):
    """A device with a fresh key (device.py keygen) registered on chain by the licensee."""
    counter = [0]

    def make(transport="http", endpoint="", mqtt_url=f"mqtt://{MQTT_HOST}:{MQTT_PORT}", register=True):
        counter[0] += 1
        dev = DeviceProc(tmp_path / f"device{counter[0]}")
        dev.state.mkdir()
        dev.address = dev.cmd("keygen").stdout.strip()
        if register:
            proof = dev.cmd(
                "register-proof",
                "--licensee",
                world.licensee.address,
                "--ledger",
                world.ledger_address,
                "--chain-id",
                str(world.deployment.chain_id),
            ).stdout.strip()
            dev.device_id = world.licensee.register_device(dev.address, "GB", bytes.fromhex(proof[2:]))
        dev.provision(world, transport, endpoint, mqtt_url)
        return dev

    return make


def write_plays(path: pathlib.Path, plays: list[tuple[int, int]]) -> pathlib.Path:
    path.write_text("timestamp,work_id\n" + "".join(f"{ts},{work}\n" for ts, work in plays))
    return path


def relayer_for(world: World, engine, **config) -> Relayer:
    return Relayer(world.w3, world.deployment, world.relayer_account, engine, RelayerConfig(**config))


def register_device(world: World, country: str = "GB") -> tuple:
    """A new device key registered to the world's licensee (with its proof of possession): (account, device id)."""
    account = Account.create()
    return account, world.licensee.register_device(account.address, country, world.licensee.device_proof(account))


@pytest.fixture
def registered(world):
    """A device registered to the world's licensee: (account, device id)."""
    return register_device(world)


def apply_on_chain(world: World, account, device_id: int, nonce: int, counts: dict[int, int] | None = None) -> None:
    """A batch (``counts``; default one play of the first work) signed by ``account`` and applied on
    chain directly by the admin (not through the ingest store), e.g. by a third party holding it."""
    licensee_index, device_number = playbatch.split_device_id(device_id)
    now = int(time.time())
    batch = playbatch.sign_batch(
        account,
        world.w3.eth.chain_id,
        world.ledger_address,
        nonce,
        now - 10,
        now - 5,
        playbatch.encode_entries(counts if counts is not None else {world.works[0]: 1}),
    )
    assert len(world.admin.submit_batches([playbatch.Group(licensee_index, [(device_number, batch)])]).applied) == 1


def signed_payload(account, world: World, nonce: int, counts: dict[int, int], from_time=None, to_time=None) -> dict:
    now = int(time.time())
    entries = playbatch.encode_entries(counts)
    batch = playbatch.sign_batch(
        account,
        world.w3.eth.chain_id,
        world.ledger_address,
        nonce,
        from_time if from_time is not None else now - 60,
        to_time if to_time is not None else now - 1,
        entries,
    )
    return {
        "device": batch.device,
        "nonce": nonce,
        "fromTime": batch.from_time,
        "toTime": batch.to_time,
        "entries": "0x" + entries.hex(),
        "signature": "0x" + batch.signature.hex(),
    }


def expected_chain_state(world: World, plays_by_work: dict[int, int]):
    """(escrow, {payee: balance}) after every work is distributed, for licensed plays only."""
    charged = {w: n * RATE for w, n in plays_by_work.items() if w in world.licensed()}
    balances = {p: 0 for p in world.payees}
    for amount in charged.values():
        for payee, part in zip(world.payees, playbatch.split_shares(amount, BPS)):
            balances[payee] += part
    return ESCROW - sum(charged.values()), balances


def assert_chain_matches(world: World, plays_by_work: dict[int, int]):
    escrow, balances = expected_chain_state(world, plays_by_work)
    for work in world.works:
        licensed_plays = plays_by_work.get(work, 0) if work in world.licensed() else 0
        assert world.admin.plays_of(work) == licensed_plays, f"plays of work {work}"
    assert world.admin.escrow_of(world.licensee.address) == escrow
    for work in world.works:
        world.admin.distribute(work)
    for payee, balance in balances.items():
        assert world.admin.balance_of(payee) == balance, f"balance of {payee}"


def assert_index_matches(world: World, engine, plays_by_work: dict[int, int]):
    """Runs the project's indexer into the same database; its play rows must equal the plays."""
    from ledger.indexer import Indexer
    from ledger.models import Play

    Indexer(engine, world.w3, world.deployment, progress=False).run()
    with session_factory(engine)() as s:
        rows = s.execute(
            select(Play.work_id, Play.licensed, func.sum(Play.count)).group_by(Play.work_id, Play.licensed)
        ).all()
    assert {(w, bool(lic)): int(n) for w, lic, n in rows} == {
        (w, w in world.licensed()): n for w, n in plays_by_work.items() if n
    }
