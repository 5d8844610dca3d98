#!/usr/bin/env python3
"""`make demo` (or `make run DEMO=1`): a small living world on the devnet, made through the paths
users take, so a newcomer sees charts with data at once.

    demo.py seed [--days 7]     # once per devnet state; a second run prints the log-ins again
    demo.py devices             # the demo devices' names, one a line (for scripts/run.sh)
    demo.py play NAME           # one demo device: plays into `device.py run --stdin` (run.sh supervises it)
    demo.py logins              # the demo log-ins again

What `seed` makes, and through which code (docs/demo.md has the cast):

- portal accounts with ``ledger.accounts.create_user``, as the sign-up page does; passwords are
  generated here, printed, and kept in ``var/demo/logins.txt`` (mode 0600), never in the repo;
- works, splits and METERED terms registered by the artists' gasless actions
  (``ledger.gasless``: a ForwardRequest signed with the artist's custodial key, sent by the
  portal's relayer key), exactly as the artist's "register a work" form runs them;
- licensees that take devnet ETH and test tokens, deposit escrow and buy licenses (the batch
  purchase) with ``LedgerClient`` from their own custodial key;
- three devices with keys made by ``scripts/device.py keygen``, registered with the key's proof
  from ``device.py register-proof``, and provisioning files under ``var/demo/devices/<name>/``;
- a history of plays: each device reports a backlog of plays (``device.py replay``, HTTP or
  MQTT) that goes through ingest, the relayer and the indexer like any other play.

Charts count plays on the day of the block that recorded them. A fresh demo devnet therefore
starts its clock ``--days`` back (scripts/run.sh starts Anvil with ``--timestamp``); the seeder
replays one day of plays at a time and moves the devnet's clock to the end of that day
(``evm_setTime``) before the relayer sends them; after the last day the clock is back on the
wall clock. On a devnet that began at the wall clock the same backlog is recorded today.

The world is recorded in ``var/demo/world.json`` with the devnet's genesis hash and ledger
address: ``seed`` does nothing when that matches the running devnet, and resumes step by step
(each step checks the chain first) after an interrupted run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEVICE_SCRIPT = ROOT / "scripts" / "device.py"
DEFAULT_STATE = Path("var") / "demo"
DAY = 86_400
HOUR = 3_600
METERED = 1  # ledger.chain.LicenseKind.METERED
USD = 1_000_000  # units of the 6-decimal settlement token


# ----------------------------------------------------------------------------- the cast


@dataclass(frozen=True)
class DemoUser:
    username: str
    roles: tuple[str, ...]
    about: str


@dataclass(frozen=True)
class DemoWork:
    key: str
    owner: str  # username
    title: str
    isrc: str  # compact ISO 3901 code
    iswc_digits: str  # the 9 digits of the ISWC; the check digit is computed (ISO 15707)
    split: tuple[tuple[str, int], ...]  # (username, basis points)
    rate: int  # METERED rate per play, token units
    fee: int  # METERED fee, token units


@dataclass(frozen=True)
class DemoLicensee:
    username: str
    escrow: int
    licenses: tuple[str, ...]  # work keys, bought in one batch purchase


@dataclass(frozen=True)
class DemoDevice:
    name: str
    licensee: str
    territory: str
    transport: str  # http | mqtt
    playlist: tuple[tuple[str, int], ...]  # (work key, weight)
    plays_per_day: int  # of the history backlog
    plays_per_minute: float  # while `make run` is up


USERS = (
    DemoUser("ada.lind", ("artist",), "artist: three works, splits with the label"),
    DemoUser("rui.costa", ("artist",), "artist: two works, one with the label"),
    DemoUser("northbeam", ("label",), "label: payee of four works, statements, API tokens"),
    DemoUser("cafe-lumen", ("licensee",), "licensee: two venues (GB over HTTP, IE over MQTT)"),
    DemoUser("radio-kite", ("licensee",), "licensee: a radio studio in SE"),
)

WORKS = (
    DemoWork(
        "glass-harbour",
        "ada.lind",
        "Glass Harbour",
        "GBNBR2600011",
        "914302011",
        (("ada.lind", 7000), ("northbeam", 3000)),
        2_000,
        0,
    ),
    DemoWork(
        "paper-lanterns",
        "ada.lind",
        "Paper Lanterns",
        "GBNBR2600012",
        "914302012",
        (("ada.lind", 7000), ("northbeam", 3000)),
        1_500,
        0,
    ),
    DemoWork(
        "night-ferry",
        "ada.lind",
        "Night Ferry (feat. Rui Costa)",
        "GBNBR2600013",
        "914302013",
        (("ada.lind", 6000), ("rui.costa", 1000), ("northbeam", 3000)),
        2_500,
        0,
    ),
    DemoWork(
        "slow-comet",
        "rui.costa",
        "Slow Comet",
        "PTRCM2600201",
        "914302201",
        (("rui.costa", 8000), ("northbeam", 2000)),
        2_000,
        0,
    ),
    DemoWork(
        "salt-road",
        "rui.costa",
        "Salt Road",
        "PTRCM2600202",
        "914302202",
        (("rui.costa", 10000),),
        3_000,
        USD * 3 // 2,
    ),
)

LICENSEES = (
    DemoLicensee("cafe-lumen", 40 * USD, ("glass-harbour", "paper-lanterns", "night-ferry", "slow-comet", "salt-road")),
    DemoLicensee("radio-kite", 25 * USD, ("paper-lanterns", "slow-comet", "salt-road")),
)

DEVICES = (
    DemoDevice(
        "lumen-london",
        "cafe-lumen",
        "GB",
        "http",
        (("glass-harbour", 5), ("paper-lanterns", 3), ("slow-comet", 3), ("salt-road", 1)),
        40,
        3.0,
    ),
    DemoDevice(
        "lumen-dublin",
        "cafe-lumen",
        "IE",
        "mqtt",
        (("glass-harbour", 2), ("night-ferry", 4), ("salt-road", 2)),
        28,
        2.0,
    ),
    DemoDevice(
        "kite-studio",
        "radio-kite",
        "SE",
        "http",
        # night-ferry is not licensed by radio-kite: its plays show as unlicensed on the work page
        (("paper-lanterns", 4), ("slow-comet", 4), ("salt-road", 2), ("night-ferry", 1)),
        50,
        3.0,
    ),
)

LICENSEE_ETH = 10**18  # devnet ETH for a licensee's own transactions
LICENSEE_TOKENS = 200 * USD  # from the test token's open faucet
TERMS_DAYS = 365


def iswc(digits: str) -> str:
    from ledger.identifiers import iswc_check_digit, normalize_iswc

    return normalize_iswc(f"T{digits}{iswc_check_digit(digits)}")


# ----------------------------------------------------------------------------- files


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` with mode 0600 from the first byte (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def read_logins(state: Path) -> dict[str, str]:
    """username -> password from the logins file (empty when there is none)."""
    found: dict[str, str] = {}
    try:
        lines = (state / "logins.txt").read_text().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            found[parts[0]] = parts[2]
    return found


def write_logins(state: Path, passwords: dict[str, str], portal: str) -> None:
    roles = {u.username: ",".join(u.roles) for u in USERS}
    lines = [f"# demo log-ins for {portal}/login (this devnet only; `make demo` made them)"]
    lines += [f"{name:<12} {roles.get(name, '?'):<9} {pw}" for name, pw in passwords.items()]
    write_private(state / "logins.txt", "\n".join(lines) + "\n")


def load_world(state: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((state / "world.json").read_text())
        return doc
    except FileNotFoundError:
        return {}


# ----------------------------------------------------------------------------- context


@dataclass
class Context:
    """What seeding acts on: the devnet, its deployment, the portal's database and secret, the
    portal's gasless relayer, and where devices send their batches."""

    w3: Any
    deployment: Any
    engine: Any
    secret: str
    gasless: Any  # ledger.gasless.GaslessRelayer
    funder: Any  # a devnet account that hands out ETH (an unlocked address or a LocalAccount)
    endpoint: str  # POST /api/v1/batches of the portal
    mqtt_url: str
    topic_prefix: str
    state: Path
    portal: str = "http://127.0.0.1:5000"
    python: str = sys.executable
    ready: Callable[[], None] = lambda: None  # called before the first play is sent (waits for the portal)

    def chain_time(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def identity(self) -> dict[str, Any]:
        return {
            "chainId": int(self.w3.eth.chain_id),
            "genesis": "0x" + bytes(self.w3.eth.get_block(0)["hash"]).hex().removeprefix("0x"),
            "ledger": self.deployment.ledger.address,
        }


def open_context(args: argparse.Namespace) -> Context:
    """The context of `make run`: everything from the LEDGER_* environment, as the services read it."""
    from ledger.chain import resolve_account
    from ledger.config import PortalSettings, Settings
    from ledger.gasless import GaslessRelayer
    from ledger.runtime import open_runtime

    settings = Settings.from_env()
    portal = PortalSettings.from_env()
    rt = open_runtime(settings)
    unlocked = rt.w3.eth.accounts
    if len(unlocked) < 3:
        raise SystemExit("the demo needs a devnet whose node unlocks its dev accounts (Anvil)")
    gas_payer = resolve_account(rt.w3, portal.relayer_key) if portal.relayer_key else unlocked[1]
    gasless = GaslessRelayer(
        rt.w3, rt.deployment, gas_payer, rt.engine, portal.gas_budget, forwarder_address=portal.forwarder_address
    )
    return Context(
        w3=rt.w3,
        deployment=rt.deployment,
        engine=rt.engine,
        secret=portal.secret_key,
        gasless=gasless,
        funder=unlocked[2],  # Anvil's third dev account: not the relayer's, not the gasless payer's
        endpoint=args.endpoint or f"{args.portal}/api/v1/batches",
        mqtt_url=settings.mqtt_url,
        topic_prefix=settings.mqtt_topic_prefix,
        state=Path(args.state),
        portal=args.portal,
    )


def seeded(ctx: Context) -> bool:
    world = load_world(ctx.state)
    return bool(world.get("complete")) and world.get("identity") == ctx.identity()


# ----------------------------------------------------------------------------- steps


class Steps:
    """Reports progress (rich) and runs the seeding steps; each step skips what exists."""

    def __init__(self, ctx: Context, quiet: bool = False):
        from rich.console import Console

        self.ctx = ctx
        self.console = Console(stderr=True, quiet=quiet)
        self.world: dict[str, Any] = {"identity": ctx.identity(), "complete": False}
        self.users: dict[str, Any] = {}  # username -> accounts.User
        self.work_ids: dict[str, int] = {}
        self.passwords = read_logins(ctx.state)
        self._children: set[subprocess.Popen[str]] = set()  # device.py processes running now
        self._lock = threading.Lock()

    def save(self) -> None:
        write_json(self.ctx.state / "world.json", self.world)

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

    # --------------------------------------------------------------------- accounts
    def accounts(self, tick: Callable[[], None]) -> None:
        from ledger import accounts

        made = False
        for spec in USERS:
            user = accounts.find_user(self.ctx.engine, spec.username)
            if user is None:
                password = secrets.token_urlsafe(12)
                user = accounts.create_user(self.ctx.engine, spec.username, password, spec.roles, self.ctx.secret)
                self.passwords[spec.username] = password
                made = True
            self.users[spec.username] = user
            tick()
        if made:
            write_logins(self.ctx.state, self.passwords, self.ctx.portal)
        self.world["users"] = {
            name: {"address": u.address, "roles": sorted(u.role_set)} for name, u in self.users.items()
        }
        self.save()

    # --------------------------------------------------------------------- works
    def works(self, tick: Callable[[], None]) -> None:
        from ledger import gasless
        from ledger.chain import LedgerClient
        from ledger.metadata import isrc_to_bytes12, make_data_uri

        reader = LedgerClient(self.ctx.w3, self.ctx.deployment)
        for spec in WORKS:
            owner = self.users[spec.owner]
            payees = [self.users[name].address for name, _ in spec.split]
            bps = [share for _, share in spec.split]
            code = iswc(spec.iswc_digits)
            then: list[dict[str, Any]] = [
                {"kind": "set_split", "params": {"payees": payees, "bps": bps}},
                {
                    "kind": "set_terms",
                    "params": {"kind": METERED, "fee": spec.fee, "rate": spec.rate, "duration": TERMS_DAYS * DAY},
                },
            ]
            work_id = int(reader.works.functions.workIdByIsrc(isrc_to_bytes12(spec.isrc)).call())
            if work_id == 0:
                # what the artist's "register a work" form queues and runs (webapp/artist.py)
                action = gasless.queue_action(
                    self.ctx.engine,
                    owner.id,
                    "register_work",
                    {
                        "uri": make_data_uri(spec.title, code),
                        "isrc": spec.isrc,
                        "title": spec.title,
                        "iswc": code,
                        "then": then,
                    },
                )
                done = self.ctx.gasless.run(action, owner, self.ctx.secret)
                if done.work_id is None:
                    raise SystemExit(f"registering {spec.title!r} did not confirm: {done.error}")
                work_id = int(done.work_id)
            else:  # registered by an interrupted run: finish its split and terms if they are missing
                if not reader.current_split(work_id)[0]:
                    self._action(owner, then[0], work_id)
                if not reader.terms_of(work_id, METERED)[3]:
                    self._action(owner, then[1], work_id)
            self.work_ids[spec.key] = work_id
            tick()
        self.world["works"] = [
            {
                "key": w.key,
                "workId": self.work_ids[w.key],
                "title": w.title,
                "isrc": w.isrc,
                "iswc": iswc(w.iswc_digits),
                "owner": w.owner,
                "split": [[name, share] for name, share in w.split],
                "rate": w.rate,
                "fee": w.fee,
            }
            for w in WORKS
        ]
        self.save()

    def _action(self, user: Any, step: dict[str, Any], work_id: int) -> None:
        from ledger import gasless

        action = gasless.queue_action(self.ctx.engine, user.id, step["kind"], step["params"], work_id=work_id)
        self.ctx.gasless.run(action, user, self.ctx.secret)

    # --------------------------------------------------------------------- licensees
    def client_of(self, username: str) -> Any:
        from ledger.accounts import custodial_account
        from ledger.chain import LedgerClient

        return LedgerClient(self.ctx.w3, self.ctx.deployment, custodial_account(self.users[username], self.ctx.secret))

    def licensees(self, tick: Callable[[], None]) -> None:
        w3 = self.ctx.w3
        rows = []
        for spec in LICENSEES:
            client = self.client_of(spec.username)
            me = client.address
            if w3.eth.get_balance(me) < LICENSEE_ETH // 2:
                funder = self.ctx.funder
                tx = {"from": getattr(funder, "address", funder), "to": me, "value": LICENSEE_ETH}
                if hasattr(funder, "sign_transaction"):
                    tx.update(nonce=w3.eth.get_transaction_count(tx["from"], "pending"), gas=21_000)
                    tx.update(gasPrice=w3.eth.gas_price, chainId=w3.eth.chain_id)
                    tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
                else:
                    tx_hash = w3.eth.send_transaction(tx)
                w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
            tick()
            escrow = client.escrow_of(me)
            if escrow < spec.escrow:
                if client.token_balance(me) < spec.escrow - escrow:
                    client.faucet(me, LICENSEE_TOKENS)
                client.deposit(spec.escrow - escrow)
            tick()
            wanted = [self.work_ids[key] for key in spec.licenses]
            missing = [w for w in wanted if client.license_of(me, w, METERED)[1] == 0]
            if missing:
                terms = [client.terms_of(w, METERED) for w in missing]
                # the buyer's limits: today's fees and rates (a terms change in between makes it revert)
                client.buy_licenses(
                    missing,
                    METERED,
                    max_total_fee=sum(t[0] for t in terms),
                    max_rate=max(t[1] for t in terms),
                )
            tick()
            rows.append({"username": spec.username, "address": me, "escrow": spec.escrow, "licenses": wanted})
        self.world["licensees"] = rows
        self.save()

    # --------------------------------------------------------------------- devices
    def device_dir(self, name: str) -> Path:
        return self.ctx.state / "devices" / name

    def device_cmd(self, name: str, *args: str, timeout: float = 120) -> str:
        """Runs `device.py` for a device and returns what it printed; SystemExit if it fails."""
        proc = subprocess.Popen(
            [self.ctx.python, str(DEVICE_SCRIPT), "--state", str(self.device_dir(name)), "--quiet", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with self._lock:
            self._children.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SystemExit(f"device.py {args[0]} for {name} did not finish in {timeout:.0f} s") from None
        finally:
            with self._lock:
                self._children.discard(proc)
        if proc.returncode != 0:
            raise SystemExit(f"device.py {args[0]} for {name} failed ({proc.returncode}): {err.strip()}")
        return out.strip()

    def in_parallel(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """fn over items in threads (device.py starts slowly); an interruption ends the device
        processes at once instead of waiting for them."""
        pool = ThreadPoolExecutor(max(1, len(items)))
        try:
            return list(pool.map(fn, items))
        except BaseException:
            with self._lock:
                for proc in self._children:
                    proc.terminate()
            raise
        finally:
            pool.shutdown(wait=True)

    def devices(self, tick: Callable[[], None]) -> None:
        from ledger import devices

        chain_id = int(self.ctx.w3.eth.chain_id)
        ledger = self.ctx.deployment.ledger.address
        clients = {spec.name: self.client_of(spec.licensee) for spec in DEVICES}

        def key_of(spec: DemoDevice) -> str:
            """The device's address: its key made by `device.py keygen` (once)."""
            key_file = self.device_dir(spec.name) / "key.json"
            if key_file.exists():
                return str(json.loads(key_file.read_text())["address"])  # the public half only
            return self.device_cmd(spec.name, "keygen")

        def proof_of(spec: DemoDevice, address: str) -> bytes:
            """The key's proof of possession for its licensee, from `device.py register-proof`."""
            client = clients[spec.name]
            proof = self.device_cmd(
                spec.name,
                "register-proof",
                "--licensee",
                client.address,
                "--ledger",
                ledger,
                "--chain-id",
                str(chain_id),
                "--nonce",
                str(client.device_registration_nonce(address)),
            )
            return bytes.fromhex(proof.removeprefix("0x"))

        addresses = self.in_parallel(key_of, DEVICES)
        ids = [clients[spec.name].device_id_of(a) for spec, a in zip(DEVICES, addresses, strict=True)]
        unregistered = [(spec, a) for spec, a, i in zip(DEVICES, addresses, ids, strict=True) if i == 0]
        proofs = {
            spec.name: proof
            for (spec, _), proof in zip(
                unregistered, self.in_parallel(lambda x: proof_of(*x), unregistered), strict=True
            )
        }
        rows = []
        for spec, address, device_id in zip(DEVICES, addresses, ids, strict=True):
            folder = self.device_dir(spec.name)
            client = clients[spec.name]
            if device_id == 0:  # the licensee registers the key with its proof (a transaction of its own)
                device_id = client.register_device(address, spec.territory, proofs[spec.name])
            # the licensee's devices page names the device (a portal row, as its registration form keeps)
            user = self.users[spec.licensee]
            if not devices.portal_rows(self.ctx.engine, user.id, address):
                row = devices.add_device(self.ctx.engine, user.id, address, spec.name, spec.territory, chain_id, ledger)
                devices.update_device(self.ctx.engine, row.id, device_id=device_id)
            # the provisioning file as the portal's download makes it
            provisioning = devices.provisioning(
                address,
                device_id,
                client.address,
                chain_id,
                ledger,
                spec.transport,
                self.ctx.endpoint,
                self.ctx.mqtt_url,
                self.ctx.topic_prefix,
            )
            write_private(folder / "provisioning.json", json.dumps(provisioning, indent=2) + "\n")
            rows.append(
                {
                    "name": spec.name,
                    "address": address,
                    "deviceId": str(device_id),
                    "licensee": spec.licensee,
                    "territory": spec.territory,
                    "transport": spec.transport,
                    "playlist": [[self.work_ids[key], weight] for key, weight in spec.playlist],
                    "playsPerMinute": spec.plays_per_minute,
                }
            )
            tick()
        self.world["devices"] = rows
        self.world.setdefault("setupChainTime", self.ctx.chain_time())  # kept when a seed resumes
        self.save()

    # --------------------------------------------------------------------- history
    def history_days(self, days: int, now: int, travel: bool) -> list[tuple[int, int, int]]:
        """(day number, first play time, last play time) of each day of the backlog: 08:00-23:00
        UTC of the last `days` days, not later than five minutes ago and, when the devnet's clock
        is moved day by day, not before the devices were registered."""
        setup = int(self.world.get("setupChainTime") or 0) if travel else 0
        out = []
        for day in range(now // DAY - days, now // DAY + 1):
            lo = max(day * DAY + 8 * HOUR, setup + 60, now - days * DAY)
            hi = min(day * DAY + 23 * HOUR, now - 300)
            if hi - lo >= 600:
                out.append((day, lo, hi))
        return out

    def backlog(self, spec: DemoDevice, day: int, lo: int, hi: int) -> Path:
        """The device's plays of one day as a CSV log (timestamp,work_id), made once."""
        path = self.device_dir(spec.name) / "history" / f"{datetime.fromtimestamp(day * DAY, UTC):%Y-%m-%d}.csv"
        if path.exists():
            return path
        rng = random.Random(f"{spec.name}/{day}")
        weekend = datetime.fromtimestamp(day * DAY, UTC).weekday() >= 5
        share = (hi - lo) / (15 * HOUR)  # a day cut short has fewer plays
        count = max(1, round(spec.plays_per_day * share * (1.3 if weekend else 1.0) * rng.uniform(0.7, 1.3)))
        keys = [self.work_ids[key] for key, _ in spec.playlist]
        weights = [weight for _, weight in spec.playlist]
        times = sorted(rng.randint(lo, hi) for _ in range(count))
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{t},{rng.choices(keys, weights)[0]}\n" for t in times)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("timestamp,work_id\n" + body)
        os.replace(tmp, path)
        return path

    def deliver(self, files: Sequence[tuple[DemoDevice, Path]]) -> None:
        """Each device replays its log (all devices at once) until the server acknowledged it."""

        def one(item: tuple[DemoDevice, Path]) -> None:
            spec, path = item
            self.device_cmd(spec.name, "replay", str(path), "--batch-size", "12", "--workers", "2", timeout=300)

        self.in_parallel(one, files)

    def settled(self, timeout: float = 180) -> int:
        """Waits until the relayer has settled every stored batch; returns the rejected ones."""
        from sqlalchemy import func, select

        from ledger.db import session_scope
        from ledger.pending import INFLIGHT, PENDING, REJECTED, PendingBatch

        deadline = time.monotonic() + timeout
        while True:
            with session_scope(self.ctx.engine) as s:
                waiting = s.scalar(
                    select(func.count()).select_from(PendingBatch).where(PendingBatch.status.in_((PENDING, INFLIGHT)))
                )
                rejected = s.scalar(
                    select(func.count()).select_from(PendingBatch).where(PendingBatch.status == REJECTED)
                )
            if not waiting:
                return int(rejected or 0)
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{waiting} play batches are still waiting for the relayer after {timeout:.0f} s "
                    "(is `ledger relay` running? see var/relayer.log)"
                )
            time.sleep(0.25)

    def hold_clock(self) -> None:
        """A devnet whose clock began in the past (a fresh demo) stays there until the history is
        recorded: after a restart Anvil would stamp the next block with the wall clock."""
        latest = self.ctx.chain_time()
        if latest < time.time() - HOUR:
            self.ctx.w3.provider.make_request("evm_setTime", [latest + 1])

    def set_clock(self, ts: int) -> bool:
        """Moves the devnet's clock forward to `ts` (never back); True when it moved."""
        if ts <= self.ctx.chain_time():
            return False
        self.ctx.w3.provider.make_request("evm_setTime", [int(ts)])
        # a block at the new time: gas estimates run on the latest block's timestamp
        self.ctx.w3.provider.make_request("evm_mine", [])
        return True

    def history(self, days: int, advance: Callable[[int], None], set_total: Callable[[int], None]) -> None:
        now = int(time.time())
        # the devnet began in the past (a fresh `make demo`): each day is recorded on its own day
        travel = self.ctx.chain_time() < now - HOUR
        done = set(self.world.get("historyDays", []))
        plan = [d for d in self.history_days(days, now, travel) if d[0] not in done]
        set_total(len(plan))
        if not travel and plan:
            self.note("this devnet's clock is the wall clock: the backlog of plays is recorded today")
        rejected = 0
        if plan:
            self.ctx.ready()
        for day, lo, hi in plan:
            if travel:
                self.set_clock(hi + 60)
            self.deliver([(spec, self.backlog(spec, day, lo, hi)) for spec in DEVICES])
            rejected = self.settled()
            self.world.setdefault("historyDays", []).append(day)
            self.save()
            advance(1)
        if travel:
            self.set_clock(int(time.time()))
        if rejected:
            self.note(f"{rejected} play batches were rejected by the chain (see `ledger` logs)")

    def wait_indexed(self, timeout: float = 120) -> None:
        """Waits until the indexer has read the chain up to now (the pages read the index)."""
        from sqlalchemy import select

        from ledger.db import session_scope
        from ledger.models import IndexerCheckpoint

        target = int(self.ctx.w3.eth.block_number)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(self.ctx.engine) as s:
                rows = s.execute(select(IndexerCheckpoint.ledger_address, IndexerCheckpoint.block_number)).all()
            ours = self.ctx.deployment.ledger.address.lower()
            if any(address.lower() == ours and block >= target for address, block in rows):
                return
            time.sleep(0.5)
        self.note("the indexer has not caught up yet; the pages fill in as it does (var/indexer.log)")


def seed(ctx: Context, days: int = 7, quiet: bool = False, wait_index: bool = False) -> dict[str, Any]:
    """Seeds the demo world once per devnet state; returns the world (as in world.json)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if seeded(ctx):
        return load_world(ctx.state)
    steps = Steps(ctx, quiet=quiet)
    previous = load_world(ctx.state)
    if previous.get("identity") == steps.world["identity"]:
        steps.world.update({k: v for k, v in previous.items() if k != "complete"})  # resume
    elif (ctx.state / "devices").exists():
        # devices of another devnet (its state was removed): their spools and logs belong to it
        (ctx.state / "devices").rename(ctx.state / f"devices.old-{int(time.time())}")
    steps.hold_clock()
    progress = Progress(
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=steps.console,
        disable=quiet,
    )
    with progress:
        for label, total, run in (
            ("portal accounts (sign-up)", len(USERS), steps.accounts),
            ("works, splits, terms (gasless)", len(WORKS), steps.works),
            ("licensees: ETH, escrow, licenses", 3 * len(LICENSEES), steps.licensees),
            ("devices: keygen, proof, register", len(DEVICES), steps.devices),
        ):
            task = progress.add_task(label, total=total)
            run(functools.partial(progress.advance, task))
        task = progress.add_task(f"plays of the last {days} days", total=None)
        steps.history(
            days, lambda n: progress.advance(task, n), lambda total: progress.update(task, total=total, completed=0)
        )
        if wait_index:
            task = progress.add_task("indexer catching up", total=None)
            steps.wait_indexed()
            progress.update(task, total=1, completed=1)
    steps.world["complete"] = True
    steps.save()
    return steps.world


# ----------------------------------------------------------------------------- printing


def print_logins(state: Path, portal: str, world: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    passwords = read_logins(state)
    table = Table(title=f"Demo log-ins: {portal}/login", title_justify="left")
    for column in ("username", "password", "who"):
        table.add_column(column)
    for spec in USERS:
        table.add_row(spec.username, passwords.get(spec.username, "(set earlier, not kept)"), spec.about)
    console = Console()
    console.print(table)
    console.print(f"Passwords are kept in {state / 'logins.txt'} (mode 0600) for this devnet.")
    works = world.get("works") or []
    if works:
        first = works[0]
        console.print(
            f"Start with {first['owner']}'s work page: {portal}/artist/works/{first['workId']} "
            f"({first['title']}); {len(world.get('devices') or [])} devices keep reporting plays."
        )


# ----------------------------------------------------------------------------- a running device


def play(
    state: Path, name: str, per_minute: float | None = None, max_age: float = 20, python: str = sys.executable
) -> int:
    """Runs one demo device: `device.py run --stdin` (a batch at least every `max_age` seconds),
    fed plays from its playlist at random moments, `per_minute` on average (default: the
    device's rate in world.json). Ends, and ends the device, on SIGTERM or SIGINT; exits with
    the device's status if the device dies (the supervisor restarts both)."""
    world = load_world(state)
    found = [d for d in world.get("devices", []) if d["name"] == name]
    if not found:
        print(f"error: no demo device {name!r} in {state / 'world.json'} (run `demo.py seed` first)", file=sys.stderr)
        return 1
    device = found[0]
    works = [int(w) for w, _ in device["playlist"]]
    weights = [int(weight) for _, weight in device["playlist"]]
    rate = float(per_minute or device.get("playsPerMinute") or 3.0) / 60.0
    child = subprocess.Popen(
        [
            python,
            str(DEVICE_SCRIPT),
            "--state",
            str(state / "devices" / name),
            "run",
            "--stdin",
            "--exit-on-eof",
            "--max-age",
            str(max_age),
        ],
        stdin=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rng = random.Random()
    try:
        while not stop.is_set() and child.poll() is None:
            if stop.wait(rng.expovariate(rate)):
                break
            assert child.stdin is not None
            try:
                child.stdin.write(f"{rng.choices(works, weights)[0]}\n")
                child.stdin.flush()
            except BrokenPipeError:
                break
    finally:
        try:  # end of input: the device batches what it holds, delivers it and exits
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            child.terminate()  # its spool keeps what it could not deliver, for the next start
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
    if signal.SIGINT in received:  # Ctrl-C: die of it, so the supervising shell stops too
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return 0 if stop.is_set() else (child.returncode or 1)


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo.py", description="The demo world of `make demo`.")
    p.add_argument("--state", default=str(DEFAULT_STATE), help="demo folder (default var/demo)")
    p.add_argument("--portal", default=os.environ.get("DEMO_PORTAL", "http://127.0.0.1:5000"), help="portal URL")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seed", help="seed the demo world once per devnet state")
    s.add_argument("--days", type=int, default=7, help="days of play history (default 7)")
    s.add_argument("--endpoint", help="device ingest URL (default PORTAL/api/v1/batches)")
    s.add_argument("--wait-portal", type=float, default=120, help="seconds to wait for the portal to answer")
    sub.add_parser("devices", help="print the demo devices' names")
    s = sub.add_parser("play", help="run one demo device (plays a few times a minute)")
    s.add_argument("name")
    s.add_argument("--per-minute", type=float, help="plays a minute on average (default: the device's own rate)")
    s.add_argument("--max-age", type=float, default=20, help="seconds before a partial batch is sent (default 20)")
    sub.add_parser("logins", help="print the demo log-ins again")
    args = p.parse_args(argv)
    state = Path(args.state)
    if args.command == "devices":
        for device in load_world(state).get("devices", []):
            print(device["name"])
        return 0
    if args.command == "play":
        return play(state, args.name, args.per_minute, args.max_age)
    if args.command == "logins":
        print_logins(state, args.portal, load_world(state))
        return 0
    if args.days < 1:
        p.error("--days must be at least 1")
    signal.signal(signal.SIGTERM, _exit_on_term)
    ctx = open_context(args)
    ctx.ready = lambda: wait_for_portal(args.portal, args.wait_portal)
    if seeded(ctx):
        print("The demo world is seeded on this devnet already.", file=sys.stderr)
    else:
        started = time.monotonic()
        seed(ctx, days=args.days, wait_index=True)
        print(f"Demo world seeded in {time.monotonic() - started:.0f} s.", file=sys.stderr)
    print_logins(state, args.portal, load_world(state))
    return 0


def _exit_on_term(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the device processes of the seed are ended too


def wait_for_portal(url: str, timeout: float) -> None:
    """Devices deliver through the portal's ingest: wait until it answers."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url + "/", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the portal at {url} does not answer (see the gunicorn output above)")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
