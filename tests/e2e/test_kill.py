"""SIGKILL anything, any time: no play a device was told was accepted is lost or counted twice.

The whole system runs as `make run` runs it, each part its own process: Anvil with its state in a
file (dumped every second), `ledger index --follow`, `ledger relay`, `ledger ingest-mqtt` and the
API app. Two devices (scripts/device.py) record plays and deliver them, one over HTTP and one over
MQTT. Each round, a random set of the processes is killed with SIGKILL at a random moment and
started again (Anvil from its state file, so the chain may come back a little older). After the
rounds everything drains; then the plays the devices recorded (all acknowledged by then) equal the
plays on chain, equal the plays in the index, and escrow and balances are exact.

`make test` runs ROUNDS (10) rounds; `make soak` runs KILL_ROUNDS (e.g. 100).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from eth_account import Account
from sqlalchemy import func, select
from web3 import Web3

from ledger.chain import LedgerClient, LicenseKind, deploy
from ledger.db import make_engine
from ledger.models import Play
from tests.support import BUILD_DIR, DEVICE_SCRIPT, MQTT_HOST, MQTT_PORT, ROOT, anvil_binary, ensure_compiled, free_port

ROUNDS = int(os.environ.get("KILL_ROUNDS", "10"))
SEED = int(os.environ.get("KILL_SEED", "42"))
RATE = 1_000
ESCROW = 10**12
SERVICES = ("anvil", "indexer", "relayer", "mqtt", "api")
#: Anvil's well-known dev keys (public; a devnet only): the admin/licensee are unlocked accounts,
#: the relayer signs with its own key.
RELAYER_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"  # dev account 9


class System:
    """The processes of `make run`, each startable and killable on its own."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.rpc_port, self.api_port = free_port(), free_port()
        self.rpc_url = f"http://127.0.0.1:{self.rpc_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.prefix = f"kill-{uuid.uuid4().hex[:10]}/plays"
        self.env = dict(
            os.environ,
            LEDGER_RPC_URL=self.rpc_url,
            LEDGER_DATABASE_URL=f"sqlite:///{tmp / 'ledger.sqlite3'}",
            LEDGER_DEPLOYMENTS=str(tmp / "deployments.json"),
            LEDGER_RELAYER_KEY=RELAYER_KEY,
            LEDGER_MQTT_URL=f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
            LEDGER_MQTT_TOPIC_PREFIX=self.prefix,
            LEDGER_LOG_LEVEL="INFO",
            LEDGER_BUILD_DIR=str(BUILD_DIR),
            PYTHONPATH=str(ROOT),
        )

    def command(self, name: str) -> list[str]:
        py = [sys.executable, "-m"]
        return {
            "anvil": [
                anvil_binary(),
                "--port",
                str(self.rpc_port),
                "--gas-limit",
                "30000000",
                "--silent",
                "--state",
                str(self.tmp / "anvil-state.json"),
                "--state-interval",
                "1",
            ],
            "indexer": py + ["ledger", "index", "--follow", "--poll", "0.3", "--no-progress"],
            "relayer": py + ["ledger", "relay", "--idle", "0.2"],
            "mqtt": py + ["ledger", "ingest-mqtt", "--client-id", f"kill-{self.prefix}"],
            "api": py + ["webapp", "--host", "127.0.0.1", "--port", str(self.api_port)],
        }[name]

    def start(self, name: str) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            self.command(name), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if name == "anvil":
            self.wait_rpc()

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def wait_rpc(self) -> None:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 5}))
        for _ in range(200):
            try:
                w3.eth.chain_id
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        raise AssertionError("anvil did not come up")


class Device:
    def __init__(self, tmp: Path, name: str):
        self.state = tmp / name
        self.state.mkdir()
        self.address = self.run("keygen").stdout.strip()

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, str(DEVICE_SCRIPT), "--state", str(self.state), "--quiet", "--timeout", "3", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode not in (0, 3):  # 3: some batches still spooled (server down)
            raise AssertionError(f"device.py {' '.join(args)}: {proc.returncode} {proc.stderr}")
        return proc

    def status(self) -> dict[str, int]:
        return json.loads(self.run("status", "--json").stdout)


def _setup(system: System, tmp: Path) -> tuple[LedgerClient, list[int], list[str], list[Device], str]:
    w3 = Web3(Web3.HTTPProvider(system.rpc_url, request_kwargs={"timeout": 30}))
    admin_addr, licensee_addr = w3.eth.accounts[:2]
    deployment = deploy(w3, admin_addr, BUILD_DIR)
    deployment.save(tmp / "deployments.json")
    admin = LedgerClient(w3, deployment, admin_addr)
    licensee = admin.as_account(licensee_addr)
    payees = [Account.create().address for _ in range(3)]
    works = []
    for i in range(3):
        work = admin.register_work(title=f"Kill {i}")
        admin.set_split(work, payees, [5_000, 3_000, 2_000], current=([], []))
        admin.set_terms(work, LicenseKind.METERED, 0, RATE, 365 * 86400)
        works.append(work)
    admin.mint(licensee_addr, ESCROW)
    for work in works:
        licensee.buy_license(work, LicenseKind.METERED)
    licensee.deposit(ESCROW)
    devices = []
    for name, transport in (("http", "http"), ("mqtt", "mqtt")):
        dev = Device(tmp, name)
        proof = dev.run(
            "register-proof",
            "--licensee",
            licensee_addr,
            "--ledger",
            deployment.ledger.address,
            "--chain-id",
            str(deployment.chain_id),
        ).stdout.strip()
        device_id = licensee.register_device(dev.address, "GB", bytes.fromhex(proof[2:]))
        (dev.state / "provisioning.json").write_text(
            json.dumps(
                {
                    "device": dev.address,
                    "deviceId": str(device_id),
                    "licensee": licensee_addr,
                    "transport": transport,
                    "endpoint": f"http://127.0.0.1:{system.api_port}/api/v1/batches",
                    "mqttUrl": f"mqtt://{MQTT_HOST}:{MQTT_PORT}",
                    "mqttTopicPrefix": system.prefix,
                    "chainId": deployment.chain_id,
                    "ledger": deployment.ledger.address,
                }
            )
        )
        devices.append(dev)
    time.sleep(2.5)  # the setup is in Anvil's state file before anything is killed
    return admin, works, payees, devices, licensee_addr


def _indexed_plays(tmp: Path) -> dict[int, int]:
    engine = make_engine(f"sqlite:///{tmp / 'ledger.sqlite3'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Play.work_id, func.sum(Play.count)).group_by(Play.work_id)).all()
    finally:
        engine.dispose()
    return {int(w): int(n) for w, n in rows}


def test_sigkill_of_any_process_loses_and_doubles_nothing(tmp_path):
    ensure_compiled()
    rng = random.Random(SEED)
    system = System(tmp_path)
    try:
        system.start("anvil")
        admin, works, payees, devices, licensee = _setup(system, tmp_path)
        subprocess.run(
            [sys.executable, "-m", "ledger", "db", "upgrade"], cwd=ROOT, env=system.env, check=True, capture_output=True
        )
        for name in SERVICES[1:]:
            system.start(name)
        recorded: collections.Counter[int] = collections.Counter()
        kills: collections.Counter[str] = collections.Counter()
        for round_ in range(ROUNDS):
            for dev in devices:
                for _ in range(rng.randint(1, 3)):
                    work, count = rng.choice(works), rng.randint(1, 40)
                    dev.run("play", "--work", str(work), "--count", str(count), "--at", str(int(time.time()) - 5))
                    recorded[work] += count
                dev.run("flush", "--batch-size", str(rng.randint(5, 60)), check=False)
            # each service in turn, plus up to two at random
            victims = sorted({SERVICES[round_ % len(SERVICES)], *rng.sample(SERVICES, rng.randint(0, 2))})
            time.sleep(rng.uniform(0.0, 1.5))
            for name in victims:
                system.kill(name)
                kills[name] += 1
            time.sleep(rng.uniform(0.0, 1.0))
            if "anvil" in victims:
                system.start("anvil")
            for name in victims:
                if name != "anvil":
                    system.start(name)
        # Drain: every device delivers everything; the relayer confirms it; the indexer catches up.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            spooled = 0
            for dev in devices:
                dev.run("flush", check=False)
                spooled += dev.status()["spooledBatches"]
            if (
                spooled == 0
                and all(admin.plays_of(w) == recorded[w] for w in works)
                and _indexed_plays(tmp_path) == {w: n for w, n in recorded.items() if n}
            ):
                break
            time.sleep(2)
        statuses = [dev.status() for dev in devices]
        assert all(s["spooledBatches"] == 0 and s["rejectedBatches"] == 0 for s in statuses), statuses
        on_chain = {w: admin.plays_of(w) for w in works}
        assert on_chain == {w: recorded[w] for w in works}, (on_chain, dict(recorded), dict(kills))
        assert _indexed_plays(tmp_path) == {w: n for w, n in recorded.items() if n}
        total = sum(recorded.values())
        assert admin.escrow_of(licensee) == ESCROW - total * RATE
        for work in works:
            admin.distribute(work)
        split = {payees[0]: 5_000, payees[1]: 3_000, payees[2]: 2_000}
        for payee, bps in split.items():  # each work's accrual split with the remainder to the lowest address
            expected = 0
            lowest = min(payees, key=lambda p: int(p, 16))
            for work in works:
                amount = recorded[work] * RATE
                shares = {p: amount * b // 10_000 for p, b in split.items()}
                shares[lowest] += amount - sum(shares.values())
                expected += shares[payee]
            assert admin.balance_of(payee) == expected
        print(f"kill test: {ROUNDS} rounds, kills {dict(kills)}, plays {total}, lost 0, doubled 0")
    finally:
        system.stop_all()
