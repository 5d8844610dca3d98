"""Micro-benchmark of per-batch ingest: N ``handle_json`` calls of 20-play batches, one thread.

Starts its own Anvil, deploys, registers one device (with the key's proof), signs N batches of
20 plays over 15 works (fresh nonces, so every batch is stored), then times ``handle_json`` on
each, on SQLite (a temp file, WAL, synchronous=FULL as in production) and on PostgreSQL
(a database of its own in the test cluster, dropped afterwards). Prints per-batch mean, p50 and
p99 and a breakdown by stage: the stages are timed by wrapping the functions ingest calls, and
"db + rest" is the total minus them (sessions, insert, commit, the answer).

    python bench/ingest_micro.py [-n 300] [--db sqlite,postgres] [--nonce-ttl S] [--profile DIR]

``--profile DIR`` also writes a pyinstrument profile of each run (pyinstrument need not be in
the project venv: put a throwaway venv's site-packages on PYTHONPATH). Not a test: nothing is
asserted but that every batch was accepted.

``--http`` instead serves the app with gunicorn as ``make run`` does (``--workers``,
``--threads``) and sends the signed batches from ``--clients`` concurrent keep-alive connections
(threads of this process; the bodies are signed before the clock starts), printing batches/s
accepted and the latency of each answer; ``--py-spy FILE`` records the gunicorn workers with
py-spy meanwhile (collapsed stacks) and prints where their time went.

    python bench/ingest_micro.py --http -n 3000 --db postgres --workers 2 --threads 16 --clients 32
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import http.client
import inspect
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from sqlalchemy import text  # noqa: E402
from web3 import Web3  # noqa: E402

from ledger import ingest, playbatch  # noqa: E402
from ledger.chain import LedgerClient, deploy  # noqa: E402
from ledger.db import make_engine, upgrade  # noqa: E402
from tests.support import (  # noqa: E402
    BUILD_DIR,
    MQTT_HOST,
    MQTT_PORT,
    ensure_compiled,
    free_port,
    postgres_database,
    running_anvil,
)

PLAYS, WORKS = 20, 15
CATALOGUE = 30  # works registered on chain; a batch names 15 of them (ingest refuses unknown works)
STAGES = ("parse", "hash", "recover", "device", "nonce")

# (object, attribute, stage): whichever of these exist are wrapped with a stage timer. Before
# and after the fast paths the same names cover the same work, so the breakdowns compare.
PROBES: list[tuple[Any, str, str]] = [
    (ingest, "parse_body", "parse"),
    (playbatch, "batch_digest", "hash"),
    (playbatch, "recover_signer", "recover"),
    (Account, "_recover_hash", "recover"),  # eth-account recovery (before the fast path)
    (ingest.ChainDevices, "device", "device"),
    (ingest.ChainDevices, "is_nonce_used", "nonce"),
]


class StageTimer:
    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    def wrap(self, fn: Callable[..., Any], stage: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.spent[stage] += time.perf_counter() - t

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        saved = []
        for owner, name, stage in PROBES:
            original = owner.__dict__.get(name)
            if original is None:
                continue
            saved.append((owner, name, original))
            if isinstance(owner, type) and not inspect.isfunction(original):
                # a class- or combo-method: wrap the bound one, called through the class
                setattr(owner, name, staticmethod(self.wrap(getattr(owner, name), stage)))
            else:
                setattr(owner, name, self.wrap(original, stage))
        try:
            yield
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)


def setup_chain(w3: Web3) -> tuple[Any, Any]:
    """Deployment and one registered device key."""
    admin_addr, licensee_addr = w3.eth.accounts[:2]
    deployment = deploy(w3, admin_addr, BUILD_DIR)
    admin = LedgerClient(w3, deployment, admin_addr)
    licensee = admin.as_account(licensee_addr)
    admin.mint(licensee_addr, 10**9)
    licensee.deposit(10**9)
    for i in range(CATALOGUE):
        admin.register_work(title=f"Bench song {i}")
    device = Account.create()
    licensee.register_device(device.address, "GB", licensee.device_proof(device))
    return deployment, device


def signed_bodies(device: Any, chain_id: int, ledger: str, n: int, first_nonce: int) -> list[bytes]:
    rng = random.Random(42)
    now = int(time.time())
    bodies = []
    for i in range(n):
        works = sorted(rng.sample(range(1, CATALOGUE + 1), WORKS))
        counts = dict.fromkeys(works, 1)
        for w in rng.choices(works, k=PLAYS - WORKS):
            counts[w] += 1
        entries = playbatch.encode_entries(counts)
        b = playbatch.sign_batch(device, chain_id, ledger, first_nonce + i, now - 3600, now - 60, entries)
        bodies.append(
            json.dumps(
                {
                    "device": b.device,
                    "nonce": b.nonce,
                    "fromTime": b.from_time,
                    "toTime": b.to_time,
                    "entries": "0x" + entries.hex(),
                    "signature": "0x" + b.signature.hex(),
                }
            ).encode()
        )
    return bodies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(label: str, ctx: ingest.IngestContext, bodies: list[bytes], warmup: int, profile_dir: Path | None) -> None:
    for body in bodies[:warmup]:  # caches, pools, first connections
        status, answer = ingest.handle_json(body, ctx)
        assert status == 202, answer
    timer = StageTimer()
    times = []
    profiler = None
    if profile_dir is not None:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001)
        profiler.start()
    cpu = time.process_time()
    with timer.installed():
        for body in bodies[warmup:]:
            t = time.perf_counter()
            status, answer = ingest.handle_json(body, ctx)
            times.append(time.perf_counter() - t)
            assert status == 202, answer
    cpu = time.process_time() - cpu
    if profiler is not None and profile_dir is not None:
        profiler.stop()
        profile_dir.mkdir(parents=True, exist_ok=True)
        (profile_dir / f"{label}.txt").write_text(profiler.output_text(unicode=False, color=False))
    n = len(times)
    ms = [t * 1000 for t in times]
    print(
        f"{label:9} n={n} per batch: mean {statistics.fmean(ms):6.2f} ms  p50 {pct(ms, 0.5):6.2f} ms  "
        f"p99 {pct(ms, 0.99):6.2f} ms  -> {1000 / statistics.fmean(ms):,.0f} batches/s on one thread"
    )
    staged = {s: timer.spent[s] * 1000 / n for s in STAGES}
    rest = statistics.fmean(ms) - sum(staged.values())
    print(
        "          breakdown (mean ms): "
        + "  ".join(f"{s} {v:.3f}" for s, v in staged.items())
        + f"  db+rest {rest:.3f}  (this process's CPU {cpu * 1000 / n:.2f} ms per batch)"
    )


def register_devices(w3: Web3, deployment: Any, count: int) -> list[Any]:
    """``count`` device keys registered under one licensee (each sends its own nonces)."""
    admin_addr, licensee_addr = w3.eth.accounts[:2]
    admin = LedgerClient(w3, deployment, admin_addr)
    licensee = admin.as_account(licensee_addr)
    devices = [Account.create() for _ in range(count)]
    for i in range(0, count, 100):  # registerDevices: 100 keys per transaction
        chunk = devices[i : i + 100]
        licensee.register_devices(
            [d.address for d in chunk], ["GB"] * len(chunk), [licensee.device_proof(d) for d in chunk]
        )
    return devices


def serve(env: dict[str, str], port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    """gunicorn with the app, as scripts/run.sh starts it; returns once it answers."""
    cmd = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", str(threads)]
    cmd += ["--bind", f"127.0.0.1:{port}", "--preload", "--no-control-socket", "webapp:create_app()"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/api/v1/health")
            c.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not come up")


def load(port: int, bodies: list[bytes], clients: int) -> tuple[float, list[float], collections.Counter[int]]:
    """Sends every body once from ``clients`` keep-alive connections; (seconds, latencies, statuses)."""
    lock = threading.Lock()
    queue = iter(bodies)
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while True:
            with lock:
                body = next(queue, None)
            if body is None:
                break
            t = time.perf_counter()
            conn.request("POST", "/api/v1/batches", body, headers)
            response = conn.getresponse()
            response.read()
            dt = time.perf_counter() - t
            with lock:
                latencies.append(dt)
                statuses[response.status] += 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, statuses


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children (gunicorn's master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def summarize_py_spy(path: Path, top: int = 30) -> str:
    """Where the workers' samples went, from py-spy's collapsed stacks: inclusive share per
    function (frames every request passes through, the server loop, are left out above 90%),
    and the leaf functions with the most samples of their own."""
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")[1:]  # the first is the process and thread
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            leaf[frames[-1]] += n
    lines = [f"{total} samples; inclusive share (under 90%):"]
    picked = [(f, n) for f, n in inclusive.most_common() if n < 0.9 * total][:top]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in picked]
    lines.append("leaf (self) share:")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in leaf.most_common(15)]
    return "\n".join(lines)


def run_http(args: argparse.Namespace) -> int:
    ensure_compiled()
    with running_anvil() as url, contextlib.ExitStack() as stack:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        deployment, first = setup_chain(w3)
        devices = [first, *register_devices(w3, deployment, args.devices - 1)]
        chain_id, ledger = int(w3.eth.chain_id), deployment.ledger.address
        per_device = -(-(args.n + args.warmup) // len(devices))
        signed = [signed_bodies(d, chain_id, ledger, per_device, 0) for d in devices]
        bodies = [b for group in zip(*signed, strict=True) for b in group][: args.n + args.warmup]
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if args.db == "sqlite":
            url_db = f"sqlite:///{tmp}/ledger.sqlite3"
        else:
            url_db = stack.enter_context(postgres_database("bench_ingest"))
        engine = make_engine(url_db)
        upgrade(engine)
        deployment.save(tmp / "deployments.json")
        env = dict(
            os.environ,
            LEDGER_RPC_URL=url,
            LEDGER_DATABASE_URL=url_db,
            LEDGER_DEPLOYMENTS=str(tmp / "deployments.json"),
            LEDGER_BUILD_DIR=str(BUILD_DIR),
            LEDGER_LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        if args.mqtt:
            return run_mqtt(args, env, bodies, engine)
        port = free_port()
        proc = serve(env, port, args.workers, args.threads)
        stack.callback(proc.wait)
        stack.callback(proc.terminate)
        load(port, bodies[: args.warmup], min(args.clients, args.warmup))  # every worker's context and caches
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(proc.pid), "--subprocesses", "--rate", "200", "--format", "raw"]
                + ["--output", str(args.py_spy), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        cpu0, server0 = os.times(), tree_cpu_seconds(proc.pid)
        seconds, latencies, statuses = load(port, bodies[args.warmup :], args.clients)
        cpu, server = os.times(), tree_cpu_seconds(proc.pid) - server0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM pending_batches")).scalar_one()
        engine.dispose()
        ms = [t * 1000 for t in latencies]
        n = len(ms)
        client_cpu = (cpu.user + cpu.system - cpu0.user - cpu0.system) / seconds
        print(
            f"http {args.db} workers={args.workers} threads={args.threads} clients={args.clients}: "
            f"{n} batches in {seconds:.2f} s -> {n / seconds:,.0f} batches/s accepted; statuses {dict(statuses)}; "
            f"stored {stored} (of {len(bodies)})"
        )
        print(
            f"  answer latency: mean {statistics.fmean(ms):.1f} ms  p50 {pct(ms, 0.5):.1f} ms"
            f"  p99 {pct(ms, 0.99):.1f} ms; gunicorn CPU {1000 * server / n:.2f} ms per batch"
            f" ({server / seconds:.2f} cores); load generator CPU {client_cpu:.2f} cores"
            f"; load average {os.getloadavg()[0]:.1f}"
        )
        if args.py_spy and args.py_spy.exists():
            print(summarize_py_spy(args.py_spy))
        return 0 if statuses.get(202, 0) == n and stored == len(bodies) else 1


def run_mqtt(args: argparse.Namespace, env: dict[str, str], bodies: list[bytes], engine: Any) -> int:
    """``ledger ingest-mqtt`` as make run starts it; one publisher sends every body with QoS 1
    and waits for every answer on the ack topics."""
    import paho.mqtt.client as mqtt

    prefix = f"bench-{os.getpid()}/plays"
    env = dict(env, LEDGER_MQTT_URL=f"mqtt://{MQTT_HOST}:{MQTT_PORT}", LEDGER_MQTT_TOPIC_PREFIX=prefix)
    consumer = subprocess.Popen(
        [sys.executable, "-m", "ledger", "ingest-mqtt", "--client-id", prefix]
        + (["--workers", str(args.threads)] if args.threads > 1 else []),  # 1: the option's default (or none)
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lock = threading.Lock()
    answers: dict[tuple[str, int], float] = {}
    statuses: collections.Counter[int] = collections.Counter()
    sent: dict[tuple[str, int], float] = {}
    all_done = threading.Event()
    total = len(bodies)

    probe = "0x" + "00" * 20  # a message the consumer answers (422) once it is subscribed
    ready = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        reply = json.loads(msg.payload)
        device = msg.topic.split("/")[-2]
        if device == probe:
            ready.set()
            return
        with lock:
            key = (device, reply.get("nonce"))
            if key in sent and key not in answers:
                answers[key] = time.perf_counter() - sent[key]
                statuses[reply["status"]] += 1
            if len(answers) >= total:
                all_done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-pub")
    client.on_message = on_message
    client.connect(MQTT_HOST, MQTT_PORT)
    client.subscribe(f"{prefix}/+/ack", qos=1)
    client.loop_start()
    try:
        for _ in range(300):  # the consumer starts (imports, node, database) and subscribes
            client.publish(f"{prefix}/{probe}", b"{}", qos=1)
            if ready.wait(1.0):
                break
        else:
            raise SystemExit("the MQTT consumer did not answer")
        parsed = [json.loads(b) for b in bodies]
        started = time.perf_counter()
        cpu0 = tree_cpu_seconds(consumer.pid)
        for body, p in zip(bodies, parsed, strict=True):
            device = p["device"].lower()
            while len(sent) - len(answers) >= args.window:  # the broker queues at most 1,000 per client
                time.sleep(0.001)
            with lock:
                sent[(device, p["nonce"])] = time.perf_counter()
            client.publish(f"{prefix}/{device}", body, qos=1)
        all_done.wait(600)
        seconds = time.perf_counter() - started
        cpu = tree_cpu_seconds(consumer.pid) - cpu0
    finally:
        client.loop_stop()
        client.disconnect()
        consumer.terminate()
        consumer.wait(30)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM pending_batches")).scalar_one()
    engine.dispose()
    ms = [t * 1000 for t in answers.values()]
    n = len(ms)
    print(
        f"mqtt {args.db} consumer workers={args.threads}: {n} answers for {total} batches in {seconds:.2f} s -> "
        f"{n / seconds:,.0f} batches/s accepted; statuses {dict(statuses)}; stored {stored}"
    )
    print(
        f"  publish-to-answer latency: p50 {pct(ms, 0.5):.1f} ms  p99 {pct(ms, 0.99):.1f} ms; "
        f"consumer CPU {1000 * cpu / max(n, 1):.2f} ms per batch ({cpu / seconds:.2f} cores); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    return 0 if statuses.get(202, 0) == total and stored == total else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=300, help="timed batches per database")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--profile", type=Path, metavar="DIR", help="write pyinstrument profiles here")
    p.add_argument("--nonce-ttl", type=float, help="seconds a nonce bitmap word is cached (0: read every batch)")
    p.add_argument("--http", action="store_true", help="through gunicorn over HTTP, concurrent clients")
    p.add_argument("--mqtt", action="store_true", help="through `ledger ingest-mqtt` (--threads: its workers)")
    p.add_argument("--window", type=int, default=200, help="--mqtt: batches sent but not yet answered, at most")
    p.add_argument("--workers", type=int, default=2, help="--http: gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1, help="--http: threads per worker (1: sync workers)")
    p.add_argument("--clients", type=int, default=16, help="--http: concurrent connections")
    p.add_argument(
        "--devices",
        type=int,
        default=20,
        help="--http/--mqtt: device keys the batches come from, in turn (2000: W2-small's many rarely-sending "
        "devices, each batch from another key, so per-device caches miss)",
    )
    p.add_argument("--py-spy", type=Path, metavar="FILE", help="--http: record the workers with py-spy")
    p.add_argument("--summarize", type=Path, metavar="FILE", help="only summarize a py-spy record and exit")
    args = p.parse_args()
    if args.summarize:
        print(summarize_py_spy(args.summarize))
        return 0
    if args.http or args.mqtt:
        return run_http(args)
    ensure_compiled()
    with running_anvil() as url:
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        deployment, device = setup_chain(w3)
        chain_id, ledger = int(w3.eth.chain_id), deployment.ledger.address
        nonce = 0
        for db in args.db.split(","):
            bodies = signed_bodies(device, chain_id, ledger, args.warmup + args.n, nonce)
            nonce += len(bodies)
            with contextlib.ExitStack() as stack:
                if db == "sqlite":
                    url_db = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/ledger.sqlite3"
                elif db == "postgres":
                    url_db = stack.enter_context(postgres_database("bench_ingest"))
                else:
                    raise SystemExit(f"unknown database {db!r}")
                engine = make_engine(url_db)
                stack.callback(engine.dispose)
                upgrade(engine)
                cache = {} if args.nonce_ttl is None else {"nonce_ttl": args.nonce_ttl}
                ctx = ingest.IngestContext.create(w3, deployment, engine, **cache)
                run(db, ctx, bodies, args.warmup, args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
