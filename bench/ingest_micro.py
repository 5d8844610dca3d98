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
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from ledger import ingest, playbatch  # noqa: E402
from ledger.chain import LedgerClient, deploy  # noqa: E402
from ledger.db import make_engine, upgrade  # noqa: E402
from tests.support import BUILD_DIR, ensure_compiled, postgres_database, running_anvil  # noqa: E402

PLAYS, WORKS = 20, 15
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
    device = Account.create()
    licensee.register_device(device.address, "GB", licensee.device_proof(device))
    return deployment, device


def signed_bodies(device: Any, chain_id: int, ledger: str, n: int, first_nonce: int) -> list[bytes]:
    rng = random.Random(42)
    now = int(time.time())
    bodies = []
    for i in range(n):
        works = sorted(rng.sample(range(1, 201), WORKS))
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=300, help="timed batches per database")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    p.add_argument("--profile", type=Path, metavar="DIR", help="write pyinstrument profiles here")
    p.add_argument("--nonce-ttl", type=float, help="seconds a nonce bitmap word is cached (0: read every batch)")
    args = p.parse_args()
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
