"""Indexer write throughput: synthesised play events through the projection and the writer.

No chain: ``PlaysRecorded`` events are built in memory first (as the contract logs them, charged
amounts matching the licenses), then indexed as ``ledger index`` does: projected by the indexer's
own projection (:mod:`ledger.indexer.projection`) into one :class:`RangeRows` per range while the
writer thread (:mod:`ledger.indexer.pipeline`) commits the range before it in one transaction with
its checkpoint. Prints play rows per second for the write alone (time on the writer thread) and
for projection + write (wall time of the loop), and the size of the summary table (``work_period_stats``)
after the run, which repeated upserts of the same (work, month, territory) keys bloat.

    python bench/indexer_write.py [--rows 1000000] [--range-rows 20000] [--db postgres|sqlite]
        [--tree DIR]   # another checkout's ledger package (before/after)

Defaults: 200 works, 200 devices over 10 territories, batches of 25 entries, 12 months cycling
per range (a range of blocks spans minutes, but months make the summary keys many: 24,000).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import struct
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
_tree = next((Path(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--tree=")), ROOT)
sys.path.insert(0, str(_tree.resolve()))
sys.path.insert(1, str(ROOT))

from sqlalchemy import text  # noqa: E402

from ledger.chain import LicenseKind  # noqa: E402
from ledger.db import make_engine, upgrade  # noqa: E402
from ledger.events import DecodedEvent  # noqa: E402
from ledger.indexer import checkpoint, writer  # noqa: E402
from ledger.indexer.projection import Projection, RangeRows, State, period_of  # noqa: E402
from ledger.metadata import make_data_uri  # noqa: E402
from ledger.playbatch import encode_entries, make_device_id  # noqa: E402
from tests.support import postgres_database  # noqa: E402

try:
    from ledger.indexer import pipeline as PIPELINE  # noqa: E402, N812
except ImportError:  # a checkout from before the write pipeline (--tree)
    PIPELINE = None  # type: ignore[assignment]


def _hash(n: int) -> str:
    return f"0x{n:064x}"


TX = "0x" + "ab" * 32
RATE = 1_000
TERRITORIES = ["GB", "US", "DE", "FR", "JP", "BR", "ES", "IT", "SE", "NL"]
LICENSEES = 20
BASE_TS = 1_764_547_200  # 2025-12-01


def ev(name: str, block: int, log_index: int, **args: object) -> DecodedEvent:
    return DecodedEvent("RoyaltyLedger", name, args, block, log_index, TX)


def setup_events(works: int, devices: int) -> list[DecodedEvent]:
    out = []
    for w in range(1, works + 1):
        out.append(
            DecodedEvent(
                "WorkRegistry",
                "WorkRegistered",
                {"workId": w, "owner": "0x" + "11" * 20, "isrc": bytes(12), "uri": make_data_uri(f"Song {w}")},
                1,
                len(out),
                TX,
            )
        )
    for i in range(1, LICENSEES + 1):
        licensee = "0x" + f"{i:040x}"
        out.append(ev("LicenseeRegistered", 1, len(out), licensee=licensee, licenseeIndex=i))
        for w in range(1, works + 1):
            out.append(
                ev(
                    "LicenseBought",
                    1,
                    len(out),
                    licensee=licensee,
                    workId=w,
                    kind=int(LicenseKind.METERED),
                    fee=0,
                    ratePerPlay=RATE,
                    expiry=2**32 - 1,
                    prevRate=0,
                    prevExpiry=0,
                )
            )
    for d in range(devices):
        licensee_index = d % LICENSEES + 1
        out.append(
            ev(
                "DeviceRegistered",
                1,
                len(out),
                deviceId=make_device_id(licensee_index, d // LICENSEES + 1),
                device="0x" + f"{d + 1:040x}",
                licensee="0x" + f"{licensee_index:040x}",
                territory=TERRITORIES[d % len(TERRITORIES)].encode(),
            )
        )
    return out


def plays_event(rng: random.Random, block: int, devices: int, works: int, batches: int, entries: int) -> DecodedEvent:
    records = b""
    for b in range(batches):
        d = rng.randrange(devices)
        device_id = make_device_id(d % LICENSEES + 1, d // LICENSEES + 1)
        counts = {w: rng.randint(1, 80) for w in rng.sample(range(1, works + 1), entries)}
        charged = sum(counts.values()) * RATE
        records += struct.pack(">QIII", device_id, block * 1000 + b, BASE_TS, BASE_TS) + charged.to_bytes(12, "big")
        records += struct.pack(">H", len(counts)) + encode_entries(counts)
    return ev("PlaysRecorded", block, 0, records=records)


def apply(projection: Projection, events: list[DecodedEvent], ts: int) -> RangeRows:
    rows = RangeRows()
    for e in events:
        handler = projection.handler(e)
        assert handler is not None
        handler(e, rows, ts, period_of(ts))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="play rows to write")
    p.add_argument("--range-rows", type=int, default=20_000, help="play rows per range (one transaction)")
    p.add_argument("--db", default="postgres", choices=("postgres", "sqlite"))
    p.add_argument("--works", type=int, default=200)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--entries", type=int, default=25, help="works per batch")
    p.add_argument("--tree", help="(as --tree=DIR) run another checkout's ledger package")
    args = p.parse_args()
    rng = random.Random(42)
    with contextlib.ExitStack() as stack:
        if args.db == "postgres":
            url = stack.enter_context(postgres_database("bench_indexer"))
        else:
            url = f"sqlite:///{stack.enter_context(tempfile.TemporaryDirectory())}/ledger.sqlite3"
        engine = make_engine(url)
        stack.callback(engine.dispose)
        upgrade(engine)
        projection = Projection(State())
        batches_per_event = 40
        events_per_range = max(1, args.range_rows // (batches_per_event * args.entries))
        ranges_events = []
        block = 2
        planned = 0
        while planned < args.rows:  # the events first: the timed loop is the indexer's alone
            month = len(ranges_events) % 12
            ts = BASE_TS + month * 31 * 86_400
            events = [
                plays_event(rng, block + i, args.devices, args.works, batches_per_event, args.entries)
                for i in range(events_per_range)
            ]
            ranges_events.append((events, {block + i: ts for i in range(events_per_range)}))
            block += events_per_range
            planned += events_per_range * batches_per_event * args.entries
        written = ranges = 0
        project_s = 0.0
        if PIPELINE is None:  # a checkout from before the write pipeline: project, then write
            with engine.begin() as conn:
                writer.write_range(conn, apply(projection, setup_events(args.works, args.devices), BASE_TS), *HOOKS)
            write_s = 0.0
            started = time.perf_counter()
            for events, timestamps in ranges_events:
                t = time.perf_counter()
                rows = apply(projection, events, next(iter(timestamps.values())))
                project_s += time.perf_counter() - t
                t = time.perf_counter()
                with engine.begin() as conn:
                    writer.write_range(conn, rows, *HOOKS)
                write_s += time.perf_counter() - t
                written += len(rows.plays)
                ranges += 1
            wall = time.perf_counter() - started
            waited = write_s
        else:
            # as `ledger index` does: each range projected while the writer thread commits the one
            # before it with its checkpoint (ledger.indexer.pipeline)
            deployment = SimpleNamespace(ledger=SimpleNamespace(address="0x" + "00" * 20), chain_id=1, deploy_block=1)
            checkpoint.ensure(engine, deployment, _hash)

            def commit(job):
                PIPELINE.commit_range(engine, job, 1024)

            def job(rows, blocks):
                return PIPELINE.RangeWrite(
                    rows, blocks[0], blocks[-1], _hash(blocks[-1]), {n: _hash(n) for n in blocks}
                )

            commit(job(apply(projection, setup_events(args.works, args.devices), BASE_TS), [1]))
            started = time.perf_counter()
            with PIPELINE.RangeWriter(commit, threaded=PIPELINE.threads_share(engine)) as pipeline:
                for events, timestamps in ranges_events:
                    t = time.perf_counter()
                    rows = projection.project(events, timestamps)
                    project_s += time.perf_counter() - t
                    pipeline.submit(job(rows, sorted(timestamps)))
                    written += len(rows.plays)
                    ranges += 1
            wall = time.perf_counter() - started
            write_s, waited = pipeline.write_seconds, pipeline.wait_seconds
        with engine.connect() as conn:
            stats_rows = conn.execute(text("SELECT count(*) FROM work_period_stats")).scalar_one()
            plays = conn.execute(text("SELECT count(*) FROM plays")).scalar_one()
            size = ""
            if args.db == "postgres":
                size_bytes = conn.execute(text("SELECT pg_total_relation_size('work_period_stats')")).scalar_one()
                heap = conn.execute(text("SELECT pg_relation_size('work_period_stats')")).scalar_one()
                hot = conn.execute(
                    text(
                        "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup FROM pg_stat_user_tables "
                        "WHERE relname = 'work_period_stats'"
                    )
                ).one()
                size = (
                    f"; work_period_stats {stats_rows:,} rows: {size_bytes / 2**20:.1f} MiB with indexes "
                    f"(heap {heap / 2**20:.1f} MiB), updates {hot[0]:,} of which HOT {hot[1]:,}, dead tuples {hot[2]:,}"
                )
        print(
            f"{args.db}: {plays:,} play rows in {ranges} ranges of ~{written // ranges:,}: "
            f"write {written / write_s:,.0f} rows/s ({write_s:.1f} s), projection + write "
            f"{written / wall:,.0f} rows/s ({wall:.1f} s: {project_s:.1f} s in the projection, "
            f"{waited:.1f} s waiting for the writer){size}"
        )
    return 0


HOOKS = (writer.write_rows, writer.write_plays)

if __name__ == "__main__":
    raise SystemExit(main())
