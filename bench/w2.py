"""W2: ingest throughput and loss against the production stack, over HTTP and then MQTT.

The stack is the one ``make run`` starts, each part its own process on free ports: an Anvil of
its own, the API and portal under gunicorn (3 workers unless told), ``ledger ingest-mqtt``,
``ledger relay`` and ``ledger index --follow``, on a fresh PostgreSQL database or a SQLite file.
The chain is set up once per workload (the W1 catalogue: 200 works, 5,000/3,000/2,000 splits,
METERED at 1,000 units per play, 20 licensees licensing every work; W2-large: 10 devices per
licensee, W2-small: 100) and rewound to that state (an Anvil snapshot) before each run.

Devices run in worker processes (multiprocessing), a few threads each; every batch is drawn
from a per-device generator seeded from 42 and signed with scripts/device.py's own code
(``batch_payload``), then sent as the device sends it: HTTP through device.py's
``HttpTransport``; MQTT on device.py's topics (``<prefix>/<device>``, QoS 1, the answer on
``<prefix>/<device>/ack``), one MQTT connection per worker process rather than one per device.
A batch the server asks to retry is sent again with the same nonce. Each device keeps one batch
in flight, as scripts/device.py does per request.

Measured: batches and plays accepted (answered 2xx) during the run; the harness polls the
index's ``play_batches`` every POLL seconds and notes when each accepted batch first appears
there, so latency (send -> rows in the index) has POLL's resolution. After the run it waits
for the system to drain; loss = plays accepted - plays of accepted batches in the index, which
must be 0 (the run fails otherwise).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import ROOT, SEED, draw_batch, figure, percentile, zipf_weights

WORKS = 200
LICENSEES = 20
RATE = 1_000
SPLIT_BPS = [5_000, 3_000, 2_000]
POLL = 0.25
#: Anvil's default mnemonic, accounts 21..24: relayer keys (public devnet keys, a devnet only).
RELAYER_ACCOUNT_INDEXES = (21, 22, 23, 24)
MNEMONIC = "test test test test test test test test test test test junk"


@dataclass(frozen=True)
class Shape:
    name: str
    devices_per_licensee: int
    plays: int
    distinct: int
    threads: int  # sending threads per worker process
    works: int = WORKS


LARGE = Shape("W2-large", 10, 1_000, 25, 8)
SMALL = Shape("W2-small", 100, 20, 15, 16)
#: gunicorn threads per worker, scripts/run.sh's default (THREADS)
THREADS = "8"


# ----------------------------------------------------------------------------------- the chain
@dataclass
class Chain:
    url: str
    deployment: Any
    deployments_file: Path
    devices: list[tuple[int, str, str]]  # (device id, address, private key hex)
    snapshot: str = ""
    relayer_keys: list[str] = field(default_factory=list)


@contextlib.contextmanager
def anvil() -> Iterator[str]:
    from tests.support import running_anvil

    with running_anvil("--accounts", "25") as url:
        yield url


def setup_chain(url: str, shape: Shape, tmp: Path, progress: bool) -> Chain:
    """Deploys and sets up the W1 catalogue, licensees and the shape's devices; snapshots it."""
    from eth_account import Account
    from tqdm import tqdm
    from web3 import Web3

    from ledger.chain import LedgerClient, LicenseKind, deploy
    from tests.support import BUILD_DIR, ensure_compiled, load_device_script

    ensure_compiled()
    device_mod = load_device_script()
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 60}))
    accounts = w3.eth.accounts
    deployment = deploy(w3, accounts[0], BUILD_DIR)
    path = tmp / "deployments.json"
    deployment.save(path)
    admin = LedgerClient(w3, deployment, accounts[0])
    rng = random.Random(SEED)
    payees = [Account.from_key(rng.randbytes(32)).address for _ in range(3)]
    n_devices = LICENSEES * shape.devices_per_licensee
    bar = tqdm(total=shape.works + LICENSEES, desc=f"{shape.name} setup", disable=not progress)
    for i in range(shape.works):
        work = admin.register_work(title=f"W2 work {i + 1}")
        admin.set_split(work, payees, SPLIT_BPS, current=([], []))
        admin.set_terms(work, LicenseKind.METERED, 0, RATE, 365 * 86400)
        bar.update()
    works = list(range(1, shape.works + 1))
    devices: list[tuple[int, str, str]] = []
    Account.enable_unaudited_hdwallet_features()
    for n in range(LICENSEES):
        lic_addr = accounts[1 + n]
        lic = admin.as_account(lic_addr)
        escrow = 10**15
        admin.mint(lic_addr, escrow)
        for i in range(0, shape.works, 100):
            lic.buy_licenses(works[i : i + 100], LicenseKind.METERED, 0, RATE)
        lic.deposit(escrow)
        keys = [Account.from_key(rng.randbytes(32)) for _ in range(shape.devices_per_licensee)]
        for i in range(0, len(keys), 50):
            chunk = keys[i : i + 50]
            proofs = [
                device_mod.registration_proof(k, deployment.chain_id, deployment.ledger.address, lic_addr)
                for k in chunk
            ]
            ids = lic.register_devices([k.address for k in chunk], ["GB"] * len(chunk), proofs)
            devices += [(int(d), k.address, k.key.hex()) for d, k in zip(ids, chunk, strict=True)]
        bar.update()
    bar.close()
    assert len(devices) == n_devices
    relayer_keys = [
        Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex() for i in RELAYER_ACCOUNT_INDEXES
    ]
    chain = Chain(url, deployment, path, devices, relayer_keys=relayer_keys)
    chain.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    return chain


def rewind(chain: Chain) -> None:
    """Back to the state right after setup, the chain's clock on the wall clock; a new snapshot."""
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(chain.url, request_kwargs={"timeout": 60}))
    w3.provider.make_request("evm_revert", [chain.snapshot])
    chain.snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    w3.provider.make_request("evm_setTime", [int(time.time())])
    w3.provider.make_request("evm_mine", [])


# ----------------------------------------------------------------------------------- the stack
class Stack:
    """The processes of `make run` on free ports, against ``chain`` and ``database_url``."""

    def __init__(self, chain: Chain, database_url: str, tmp: Path, *, api_nodes: int, api_workers: int, relayers: int):
        from tests.support import MQTT_HOST, MQTT_PORT, free_port

        self.chain, self.tmp = chain, tmp
        self.api_ports = [free_port() for _ in range(api_nodes)]
        self.api_workers, self.relayers = api_workers, relayers
        self.prefix = f"bench-{uuid.uuid4().hex[:10]}/plays"
        self.mqtt_url = f"mqtt://{MQTT_HOST}:{MQTT_PORT}"
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = dict(
            os.environ,
            LEDGER_RPC_URL=chain.url,
            LEDGER_DATABASE_URL=database_url,
            LEDGER_DEPLOYMENTS=str(chain.deployments_file),
            LEDGER_MQTT_URL=self.mqtt_url,
            LEDGER_MQTT_TOPIC_PREFIX=self.prefix,
            LEDGER_SECRET_KEY=uuid.uuid4().hex * 2,
            LEDGER_LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def start(self) -> None:
        import requests

        py = [sys.executable, "-m", "ledger"]
        subprocess.run([*py, "db", "upgrade"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        self._start("indexer", [*py, "index", "--follow", "--poll", "0.2", "--no-progress"])
        for k in range(self.relayers):
            env = dict(self.env, LEDGER_RELAYER_KEY=self.chain.relayer_keys[k])
            self._start(f"relayer{k}", [*py, "relay", "--idle", "0.2", "--partition", f"{k}/{self.relayers}"], env)
        self._start("mqtt", [*py, "ingest-mqtt", "--client-id", f"bench-{self.prefix}"])
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        for n, port in enumerate(self.api_ports):
            # as scripts/run.sh serves it (gthread workers: keep-alive, concurrent batches share commits)
            args = [gunicorn, "--workers", str(self.api_workers), "--threads", THREADS, "--bind", f"127.0.0.1:{port}"]
            args.append("--preload")
            self._start(f"api{n}", [*args, "--no-control-socket", "webapp:create_app()"])
        deadline = time.monotonic() + 120
        for port in self.api_ports:
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                self.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("the API did not start")
                time.sleep(0.2)
        self.warm_up()
        time.sleep(1.0)  # the MQTT consumer subscribes

    def warm_up(self) -> None:
        """An empty body to every worker (a 4xx): each builds its ingest context before the clock
        starts, as a server that has been up a while has."""
        from concurrent.futures import ThreadPoolExecutor

        import requests

        def post(url: str) -> int:
            return requests.post(url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=60).status_code

        urls = [u for u in self.endpoints() for _ in range(2 * self.api_workers)]
        with ThreadPoolExecutor(len(urls)) as pool:
            for _ in range(2):
                codes = set(pool.map(post, urls))
        if not all(400 <= c < 500 for c in codes):
            raise RuntimeError(f"warm-up answers {codes}, not a 4xx")

    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/api/v1/batches" for p in self.api_ports]

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.tmp / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{tail}")

    def stop(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'ledger.sqlite3'}"
    else:
        from tests.support import postgres_database

        with postgres_database("ledger_bench_w2") as url:
            yield url


# ----------------------------------------------------------------------------------- devices
@dataclass
class SendPlan:
    transport: str
    endpoints: list[str]
    mqtt_url: str
    prefix: str
    chain_id: int
    ledger: str
    shape: Shape
    duration: float
    devices: list[tuple[int, int, str, str]]  # (global index, device id, address, key)


def _device_worker(plan: SendPlan, out: Any, go: Any, start: Any) -> None:
    """One worker process: its devices over ``shape.threads`` threads. Says "ready" on ``out`` once
    set up, sends from ``start.value`` (wall clock) once ``go`` is set, then puts its records on ``out``."""
    from eth_account import Account

    from tests.support import load_device_script

    device_mod = load_device_script()
    weights = zipf_weights(plan.shape.works)
    records: list[tuple[int, int, int, float, float, str]] = []  # device id, nonce, plays, sent, acked, outcome
    lock = threading.Lock()
    mqtt = _MqttLink(plan, device_mod) if plan.transport == "mqtt" else None
    threads = min(plan.shape.threads, len(plan.devices))

    def prepare(mine: list[tuple[int, int, str, str]]) -> tuple[list[Any], dict[int, Any]]:
        devs = [(idx, dev_id, Account.from_key(key), random.Random(f"{SEED}/{idx}"), 0) for idx, dev_id, _, key in mine]
        transports = {}
        if mqtt is None:
            for idx, _, acct, _, _ in devs:
                prov = device_mod.Provisioning(
                    device=acct.address,
                    device_id=0,
                    licensee="",
                    transport="http",
                    endpoint=plan.endpoints[idx % len(plan.endpoints)],
                    mqtt_url="",
                    chain_id=plan.chain_id,
                    ledger=plan.ledger,
                )
                transports[idx] = device_mod.HttpTransport(prov, timeout=30, workers=1)
        return devs, transports

    def sender(devs: list[Any], transports: dict[int, Any]) -> None:
        nonces = {idx: 0 for idx, *_ in devs}
        local: list[tuple[int, int, int, float, float, str]] = []
        end = start.value + plan.duration
        while time.time() < start.value:
            time.sleep(0.01)
        i = 0
        while time.time() < end:
            idx, dev_id, acct, rng, _ = devs[i % len(devs)]
            i += 1
            nonces[idx] += 1
            counts = draw_batch(rng, weights, plan.shape.plays, plan.shape.distinct)
            now = int(time.time())
            payload = device_mod.batch_payload(acct, plan.chain_id, plan.ledger, nonces[idx], now - 60, now - 1, counts)
            body = json.dumps(payload, separators=(",", ":"))
            sent = time.time()
            for _attempt in range(20):
                if mqtt is not None:
                    outcome = mqtt.send(acct.address, nonces[idx], body)
                else:
                    outcome = transports[idx].send(body)
                if outcome.kind != "retry":
                    break
                time.sleep(0.2)
            local.append((dev_id, nonces[idx], plan.shape.plays, sent, time.time(), f"{outcome.kind}:{outcome.code}"))
        with lock:
            records.extend(local)

    prepared = [prepare(plan.devices[t::threads]) for t in range(threads)]
    out.put("ready")
    go.wait()
    pool = [threading.Thread(target=sender, args=args) for args in prepared]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if mqtt is not None:
        mqtt.close()
    out.put(records)


class _MqttLink:
    """Publishes on device.py's topics and waits for each answer on ``<prefix>/<device>/ack``."""

    def __init__(self, plan: SendPlan, device_mod: Any):
        from urllib.parse import urlparse

        import paho.mqtt.client as mqtt

        self.device_mod = device_mod
        self.prefix = plan.prefix
        url = urlparse(plan.mqtt_url)
        self.cond = threading.Condition()
        self.acks: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-dev-{uuid.uuid4().hex[:10]}", clean_session=True
        )
        self.client.on_connect = lambda c, *_a, **_k: c.subscribe(f"{self.prefix}/+/ack", qos=1)
        self.client.on_subscribe = lambda *_a, **_k: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.max_inflight_messages_set(1000)
        self.client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("no MQTT subscription")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            data = json.loads(msg.payload)
            key = (msg.topic.split("/")[-2], int(data["nonce"]))
            status = int(data["status"])
        except (ValueError, KeyError, TypeError, IndexError):
            return
        with self.cond:
            self.acks[key] = (status, data)
            self.cond.notify_all()

    def send(self, device: str, nonce: int, body: str) -> Any:
        key = (device.lower(), nonce)
        self.client.publish(f"{self.prefix}/{device.lower()}", body, qos=1)
        deadline = time.monotonic() + 30
        with self.cond:
            while key not in self.acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return self.device_mod.Outcome("retry", 0, "timeout", "no ack")
                self.cond.wait(left)
            status, data = self.acks.pop(key)
        return self.device_mod.classify(status, data)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ----------------------------------------------------------------------------------- one run
def _watch_index(database_url: str, seen: dict[tuple[int, int], float], stop: threading.Event) -> None:
    """Notes the wall-clock time each (device id, nonce) first appears in play_batches."""
    from sqlalchemy import select

    from ledger.db import make_engine
    from ledger.models import PlayBatch

    engine = make_engine(database_url)
    last = 0
    try:
        while not stop.is_set():
            try:
                with engine.connect() as conn:
                    rows = conn.execute(
                        select(PlayBatch.id, PlayBatch.device_id, PlayBatch.nonce).where(PlayBatch.id > last)
                    ).all()
            except Exception:  # noqa: BLE001 - the schema may not exist yet, or SQLite is busy
                rows = []
            now = time.time()
            for row_id, dev, nonce in rows:
                seen.setdefault((int(dev), int(nonce)), now)
                last = max(last, int(row_id))
            stop.wait(POLL)
    finally:
        engine.dispose()


def run_once(
    chain: Chain,
    shape: Shape,
    transport: str,
    db: str,
    *,
    duration: float,
    drain_timeout: float,
    procs: int,
    api_nodes: int = 1,
    api_workers: int = 3,
    relayers: int = 1,
    progress: bool = True,
    plot: Path | None = None,
) -> dict[str, Any]:
    """One W2 run; returns its figures (raises when anything accepted is lost)."""
    from tqdm import tqdm

    label = f"{shape.name} {transport.upper()} {db}"
    if api_nodes > 1 or relayers > 1 or api_workers != 3:
        label += f" ({api_nodes} ingest x {api_workers} workers, {relayers} relayer keys)"
    tmp = Path(tempfile.mkdtemp(prefix="bench-w2-"))
    rewind(chain)
    seen: dict[tuple[int, int], float] = {}
    with database(db, tmp) as url:
        stack = Stack(chain, url, tmp, api_nodes=api_nodes, api_workers=api_workers, relayers=relayers)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_index, args=(url, seen, stop), daemon=True)
        try:
            stack.start()
            watcher.start()
            devs = [(i, d, a, k) for i, (d, a, k) in enumerate(chain.devices)]
            ctx = mp.get_context("spawn")
            queue, go, start = ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
            workers = []
            for w in range(procs):
                plan = SendPlan(
                    transport,
                    stack.endpoints(),
                    stack.mqtt_url,
                    stack.prefix,
                    chain.deployment.chain_id,
                    chain.deployment.ledger.address,
                    shape,
                    duration,
                    devs[w::procs],
                )
                p = ctx.Process(target=_device_worker, args=(plan, queue, go, start), daemon=True)
                p.start()
                workers.append(p)
            for _ in workers:  # every worker has imported, loaded its keys and connected
                if queue.get(timeout=300) != "ready":
                    raise RuntimeError("a device worker did not start")
            start_at = start.value = time.time() + 0.5
            go.set()
            bar = tqdm(total=int(duration), desc=label, unit="s", disable=not progress)
            while time.time() < start_at + duration:
                time.sleep(1)
                bar.n = min(int(duration), max(0, int(time.time() - start_at)))
                bar.set_postfix(indexed=len(seen), refresh=True)
                stack.check()
            bar.close()
            records: list[tuple[int, int, int, float, float, str]] = []
            got = 0
            while got < len(workers):
                try:
                    records += queue.get(timeout=5)
                    got += 1
                except Exception:  # noqa: BLE001 - queue.Empty: is every worker still alive?
                    dead = [p.exitcode for p in workers if p.exitcode not in (None, 0)]
                    if dead or time.time() > start_at + duration + 300:
                        raise RuntimeError(f"device workers failed (exit codes {dead})") from None
            for p in workers:
                p.join(30)
            accepted = [r for r in records if r[5].startswith("ack")]
            failed = [r for r in records if not r[5].startswith("ack")]
            want = {(r[0], r[1]) for r in accepted}
            deadline = time.time() + drain_timeout
            bar = tqdm(total=len(want), desc=f"{label} drain", disable=not progress)
            while time.time() < deadline:
                done = sum(1 for k in want if k in seen)
                bar.n = done
                bar.refresh()
                if done == len(want):
                    break
                stack.check()
                time.sleep(0.5)
            bar.close()
            time.sleep(2 * POLL)
        finally:
            stop.set()
            stack.stop()
            watcher.join(10)
        pending_left = _pending_states(url)
    keep = not accepted or bool(os.environ.get("BENCH_KEEP_LOGS"))
    indexed = [r for r in accepted if (r[0], r[1]) in seen]
    plays_accepted = sum(r[2] for r in accepted)
    plays_indexed = sum(r[2] for r in indexed)
    in_window = [r for r in accepted if r[4] <= start_at + duration]
    latencies = [seen[(r[0], r[1])] - r[3] for r in indexed]
    last = max((seen[(r[0], r[1])] for r in indexed), default=start_at + duration)
    span = max(duration, last - start_at)
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    result = {
        "run": label,
        "shape": shape.name,
        "transport": transport,
        "database": db,
        "api_nodes": api_nodes,
        "api_workers": api_workers,
        "relayers": relayers,
        "device_processes": procs,
        "duration_s": duration,
        "batches_accepted": len(accepted),
        "plays_accepted": plays_accepted,
        "batches_not_accepted": len(failed),
        "not_accepted_reasons": sorted({r[5] for r in failed}),
        "accepted_batches_per_s": round(len(in_window) / duration, 1),
        "accepted_plays_per_s": round(sum(r[2] for r in in_window) / duration),
        "indexed_batches_per_s": round(len(indexed) / span, 1),
        "indexed_plays_per_s": round(plays_indexed / span),
        "indexed_span_s": round(span, 1),
        "latency_p50_s": round(p50, 2) if p50 is not None else None,
        "latency_p99_s": round(p99, 2) if p99 is not None else None,
        "loss_plays": plays_accepted - plays_indexed,
        "store_after_drain": pending_left,
    }
    if plot is not None and accepted:
        _plot(plot, label, start_at, accepted, seen, latencies, by_batch=shape.plays < 100)
        result["plot"] = plot.name
    if not keep and not result["loss_plays"]:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result["logs"] = str(tmp)
    if result["loss_plays"] or not accepted:
        raise LossError(result)
    return result


class LossError(RuntimeError):
    def __init__(self, result: dict[str, Any]):
        if result["batches_accepted"]:
            what = f"{result['loss_plays']} accepted plays not in the index after draining"
        else:
            what = f"no batch accepted ({', '.join(result['not_accepted_reasons'])})"
        super().__init__(f"{result['run']}: {what}; logs in {result.get('logs')}")
        self.result = result


def _pending_states(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from ledger.db import make_engine
    from ledger.pending import PendingBatch

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(PendingBatch.status, func.count()).group_by(PendingBatch.status)).all()
        return {str(s): int(n) for s, n in rows}
    finally:
        engine.dispose()


def _plot(
    path: Path,
    label: str,
    start: float,
    accepted: list[tuple[int, int, int, float, float, str]],
    seen: dict[tuple[int, int], float],
    latencies: list[float],
    by_batch: bool,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc: dict[int, int] = {}
    idx: dict[int, int] = {}
    for dev, nonce, plays, _sent, acked, _ in accepted:
        n = 1 if by_batch else plays
        acc[int(acked - start)] = acc.get(int(acked - start), 0) + n
        if (dev, nonce) in seen:
            t = int(seen[(dev, nonce)] - start)
            idx[t] = idx.get(t, 0) + n
    end = max([*acc, *idx, 1]) + 1
    xs = list(range(end))
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(xs, [acc.get(x, 0) for x in xs], label="accepted")
    a.plot(xs, [idx.get(x, 0) for x in xs], label="confirmed and indexed (seen per poll)")
    a.set_xlabel("seconds since the first send")
    a.set_ylabel("batches per second" if by_batch else "plays per second")
    a.set_title("throughput")
    a.legend()
    b.hist(latencies, bins=40)
    b.set_xlabel("seconds from send to rows in the index")
    b.set_ylabel("batches")
    b.set_title("latency")
    fig.suptitle(label)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------- the workload
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def main(
    smoke: bool,
    *,
    duration: float | None = None,
    drain_timeout: float | None = None,
    procs: int = 2,
    shapes: tuple[str, ...] = ("large", "small"),
    transports: tuple[str, ...] = ("http", "mqtt"),
    dbs: tuple[str, ...] = ("postgresql", "sqlite"),
    scale: bool = True,
    plot_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    duration = duration or (4.0 if smoke else 60.0)
    drain_timeout = drain_timeout or (120.0 if smoke else 600.0)
    runs: list[dict[str, Any]] = []
    errors: list[str] = []
    figures: list[dict[str, Any]] = []
    for key in shapes:
        shape = LARGE if key == "large" else SMALL
        if smoke:  # a few devices only: the code path, not the scale
            shape = Shape(shape.name, 1, shape.plays, shape.distinct, 2, works=30)
        with anvil() as url:
            tmp = Path(tempfile.mkdtemp(prefix="bench-w2-chain-"))
            chain = setup_chain(url, shape, tmp, progress)
            configs: list[tuple[str, str, int, int, int]] = [(t, d, 1, 3, 1) for d in dbs for t in transports]
            if scale and key == "small":
                configs += [("http", "postgresql", n, 1, r) for n in (1, 2) for r in (1, 2)]
            if smoke:  # each shape, transport and database once, and one scale-out run: three stacks
                first = (transports[0], dbs[0], 1, 3, 1)
                last = (transports[-1], dbs[-1], 1, 3, 1)
                configs = [first if key == shapes[0] else last]
                configs += [("http", "postgresql", 2, 1, 2)] if scale and key == "small" else []
            for transport, db, nodes, workers, relayers in configs:
                plot = None
                if plot_dir is not None:
                    name = f"w2-{key}-{transport}-{db}"
                    if (nodes, workers, relayers) != (1, 3, 1):
                        name += f"-{nodes}x{workers}-ingest-{relayers}-relayers"
                    plot = plot_dir / f"{name}.png"
                try:
                    r = run_once(
                        chain,
                        shape,
                        transport,
                        db,
                        duration=duration,
                        drain_timeout=drain_timeout,
                        procs=procs,
                        api_nodes=nodes,
                        api_workers=workers,
                        relayers=relayers,
                        progress=progress,
                        plot=plot,
                    )
                except LossError as exc:
                    r = exc.result
                    errors.append(str(exc))
                runs.append(r)
                print(
                    f"{r['run']}: accepted {r['accepted_batches_per_s']} batches/s "
                    f"({r['accepted_plays_per_s']:,} plays/s); indexed {r['indexed_batches_per_s']} batches/s "
                    f"({r['indexed_plays_per_s']:,} plays/s); p50 {r['latency_p50_s']} s p99 "
                    f"{r['latency_p99_s']} s; loss {r['loss_plays']}",
                    flush=True,
                )
            shutil.rmtree(tmp, ignore_errors=True)
    for r in runs:
        big = r["shape"] == "W2-large"
        base = r["api_nodes"] == 1 and r["api_workers"] == 3 and r["relayers"] == 1
        figures += [
            figure(
                f"{r['run']}: accepted", r["accepted_batches_per_s"], "batches/s", "" if big or not base else ">= 1,000"
            ),
            figure(f"{r['run']}: accepted", r["accepted_plays_per_s"], "plays/s"),
            figure(
                f"{r['run']}: confirmed and indexed",
                r["indexed_batches_per_s"],
                "batches/s",
                "" if big or not base else ">= 500",
            ),
            figure(
                f"{r['run']}: confirmed and indexed",
                r["indexed_plays_per_s"],
                "plays/s",
                ">= 100,000" if big and base else "",
            ),
            figure(f"{r['run']}: send -> index p50", r["latency_p50_s"], "s"),
            figure(f"{r['run']}: send -> index p99", r["latency_p99_s"], "s", "< 5 s"),
            figure(f"{r['run']}: loss after draining", r["loss_plays"], "plays", "0"),
        ]
    scale_runs = {
        (r["api_nodes"], r["relayers"]): r for r in runs if r["shape"] == "W2-small" and r["api_workers"] == 1
    }
    base_run = scale_runs.get((1, 1))
    if base_run and base_run["indexed_batches_per_s"]:
        for (nodes, relayers), r in sorted(scale_runs.items()):
            figures.append(
                figure(
                    f"scale-out: {nodes} ingest, {relayers} relayer keys vs 1 and 1, accepted",
                    round(r["accepted_batches_per_s"] / max(base_run["accepted_batches_per_s"], 1e-9), 2),
                    "x",
                )
            )
            figures.append(
                figure(
                    f"scale-out: {nodes} ingest, {relayers} relayer keys vs 1 and 1, confirmed and indexed",
                    round(r["indexed_batches_per_s"] / max(base_run["indexed_batches_per_s"], 1e-9), 2),
                    "x",
                )
            )
    return {
        "params": {
            "duration_s": duration,
            "drain_timeout_s": drain_timeout,
            "device_processes": procs,
            "poll_s": POLL,
            "smoke": smoke,
        },
        "runs": runs,
        "figures": figures,
        "errors": errors,
    }
