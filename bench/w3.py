"""W3: statements over 10,000,000 plays of 1,000 works whose payees include one label.

The plays are synthesised as contract events and go through the indexer's own write path: the
projection (ledger.indexer.projection) turns each range into rows and counters while the writer
thread (ledger.indexer.pipeline) commits the range before it in one SQL transaction with its
checkpoint, as ``ledger index`` does. No node is involved and no SQL is hand-written.

The catalogue (seed 42): 1,000 works; 100 artists with 10 works each; every work splits
artist 5,000 / label 3,000 / writer 2,000 basis points (the label is a payee of all 1,000).
20 licensees hold a METERED license at 1,000 units per play on every work; 10 devices each, in 5
territories. Plays come in W1-shaped batches (1,000 plays over 25 distinct works, Zipf s = 1.1
over the 1,000 works), 100 batches per ``PlaysRecorded`` event, spread evenly over the 12 months
of 2026; a range of 10 events is one SQL transaction.

Figures: the indexer's write rate (play rows/s over the wall time of projection + SQL, the
events synthesised beforehand), and p50/p99 over 20 runs of
the label's statement for one month and for all time, and of one artist's (10 works), through
the library (ledger.statements.statement) and through ``ledger statement`` end to end (a new
process each run, with the CPU time the process used beside its wall time), and the time of
``ledger --version``.
"""

from __future__ import annotations

import bisect
import itertools
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .common import ROOT, SEED, ZIPF_S, figure, percentile

WORKS = 1_000
ARTISTS = 100
LICENSEES = 20
DEVICES_PER_LICENSEE = 10
TERRITORIES = ("GB", "US", "DE", "FR", "JP")
BATCH_PLAYS, BATCH_WORKS = 1_000, 25
BATCHES_PER_EVENT = 100
EVENTS_PER_RANGE = 10
RATE = 1_000
SPLIT_BPS = (5_000, 3_000, 2_000)
YEAR_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
YEAR_END = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
MONTH = "2026-06"
RUNS = 20


def _address(rng: random.Random) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(rng.randbytes(20))


def _event(name: str, contract: str, block: int, log_index: int, **args: Any) -> Any:
    from ledger.events import DecodedEvent

    return DecodedEvent(contract, name, args, block, log_index, f"0x{block:064x}")


def _record(device_id: int, nonce: int, from_time: int, to_time: int, counts: dict[int, int]) -> bytes:
    """One batch as a PlaysRecorded event carries it (decoded by ledger.playbatch.decode_play_records)."""
    import struct

    entries = sorted(counts.items())
    charged = sum(c for _, c in entries) * RATE
    head = struct.pack(">QIII", device_id, nonce, from_time, to_time) + charged.to_bytes(12, "big")
    return head + struct.pack(">H", len(entries)) + b"".join(struct.pack(">IH", w, c) for w, c in entries)


class Catalogue:
    def __init__(self, rng: random.Random):
        self.label = _address(rng)
        self.artists = [_address(rng) for _ in range(ARTISTS)]
        self.writers = [_address(rng) for _ in range(ARTISTS)]
        self.licensees = [_address(rng) for _ in range(LICENSEES)]
        self.devices = [
            ((i + 1) << 32 | (d + 1), _address(rng), TERRITORIES[(i * DEVICES_PER_LICENSEE + d) % len(TERRITORIES)])
            for i in range(LICENSEES)
            for d in range(DEVICES_PER_LICENSEE)
        ]

    def artist_of(self, work_id: int) -> int:
        return (work_id - 1) // (WORKS // ARTISTS)

    def setup_events(self, block: int) -> list[Any]:
        from ledger.playbatch import sorted_split

        events, log = [], itertools.count()
        expiry = YEAR_END + 365 * 86400
        for work in range(1, WORKS + 1):
            a = self.artist_of(work)
            events.append(
                _event(
                    "WorkRegistered",
                    "WorkRegistry",
                    block,
                    next(log),
                    workId=work,
                    uri=f"ipfs://w3/{work}",
                    owner=self.artists[a],
                    isrc=f"QZW3B26{work:05d}".encode(),
                )
            )
            payees, bps = sorted_split([self.artists[a], self.label, self.writers[a]], list(SPLIT_BPS))
            events.append(_event("SplitSet", "RoyaltyLedger", block, next(log), workId=work, payees=payees, bps=bps))
        for i, lic in enumerate(self.licensees):
            events.append(
                _event("LicenseeRegistered", "RoyaltyLedger", block, next(log), licenseeIndex=i + 1, licensee=lic)
            )
            for work in range(1, WORKS + 1):
                events.append(
                    _event(
                        "LicenseBought",
                        "RoyaltyLedger",
                        block,
                        next(log),
                        licensee=lic,
                        workId=work,
                        kind=1,
                        fee=0,
                        ratePerPlay=RATE,
                        expiry=expiry,
                        prevRate=0,
                        prevExpiry=0,
                    )
                )
        for device_id, address, territory in self.devices:
            events.append(
                _event(
                    "DeviceRegistered",
                    "RoyaltyLedger",
                    block,
                    next(log),
                    deviceId=device_id,
                    device=address,
                    licensee=self.licensees[(device_id >> 32) - 1],
                    territory=territory.encode(),
                )
            )
        return events


def synthesise(engine: Any, plays: int, progress: bool = True) -> dict[str, Any]:
    """Indexes the catalogue and ``plays`` plays into ``engine`` (migrated, empty) through the
    indexer's projection and write pipeline; returns the catalogue and the write figures.

    The events are synthesised first, then indexed range by range as ``ledger index`` does
    (:meth:`Projection.project`, then :class:`RangeWriter` committing each range with its
    checkpoint on the writer thread while the next range is projected). The rate is play rows
    over the wall time of that loop: projection plus the time it waited for the writer."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from ledger.indexer import checkpoint
    from ledger.indexer.pipeline import RangeWrite, RangeWriter, commit_range, threads_share
    from ledger.indexer.projection import Projection, State

    rng = random.Random(SEED)
    cat = Catalogue(rng)
    projection = Projection(State())
    deployment = SimpleNamespace(ledger=SimpleNamespace(address="0x" + "00" * 20), chain_id=1, deploy_block=1)
    checkpoint.ensure(engine, deployment, lambda n: f"0x{n:064x}")  # type: ignore[arg-type]

    def commit(job: RangeWrite) -> None:
        commit_range(engine, job, 1024)

    def job(rows: Any, blocks: list[int]) -> RangeWrite:
        return RangeWrite(rows, blocks[0], blocks[-1], f"0x{blocks[-1]:064x}", {n: f"0x{n:064x}" for n in blocks})

    commit(job(projection.project(cat.setup_events(1), {1: YEAR_START}), [1]))

    cum = list(itertools.accumulate(1 / (k**ZIPF_S) for k in range(1, WORKS + 1)))
    total = cum[-1]
    batches = max(1, plays // BATCH_PLAYS)
    events = (batches + BATCHES_PER_EVENT - 1) // BATCHES_PER_EVENT
    step = (YEAR_END - YEAR_START - 3600) // max(1, events)
    nonces = dict.fromkeys((d for d, _, _ in cat.devices), 0)
    devices = [d for d, _, _ in cat.devices]
    bar = tqdm(total=batches * BATCH_PLAYS, unit="play", unit_scale=True, desc="W3 synthesise", disable=not progress)
    ranges: list[tuple[list[Any], dict[int, int]]] = []
    done = 0
    for n in range(events):
        block = 2 + n
        ts = YEAR_START + 3600 + n * step
        records = bytearray()
        count = min(BATCHES_PER_EVENT, batches - done)
        for _ in range(count):
            device = devices[rng.randrange(len(devices))]
            nonces[device] += 1
            chosen: set[int] = set()
            while len(chosen) < BATCH_WORKS:
                chosen.add(bisect.bisect_right(cum, rng.random() * total) + 1)
            ordered = sorted(chosen)
            counts = dict.fromkeys(ordered, 1)
            sub = list(itertools.accumulate(cum[w - 1] - (cum[w - 2] if w > 1 else 0) for w in ordered))
            for _ in range(BATCH_PLAYS - BATCH_WORKS):
                counts[ordered[bisect.bisect_right(sub, rng.random() * sub[-1])]] += 1
            records += _record(device, nonces[device], ts - 3600, ts - 60, counts)
        done += count
        if n % EVENTS_PER_RANGE == 0:
            ranges.append(([], {}))
        ranges[-1][0].append(_event("PlaysRecorded", "RoyaltyLedger", block, 0, records=bytes(records)))
        ranges[-1][1][block] = ts
        bar.update(count * BATCH_PLAYS)
    bar.close()
    project_seconds = 0.0
    play_rows = 0
    started = time.perf_counter()
    with RangeWriter(commit, threaded=threads_share(engine)) as pipeline:
        for range_events, timestamps in ranges:
            t = time.perf_counter()
            rows = projection.project(range_events, timestamps)
            project_seconds += time.perf_counter() - t
            play_rows += len(rows.plays)
            pipeline.submit(job(rows, sorted(timestamps)))
    wall = time.perf_counter() - started
    return {
        "catalogue": cat,
        "plays": done * BATCH_PLAYS,
        "batches": done,
        "play_rows": play_rows,
        "index_seconds": wall,
        "handler_seconds": project_seconds,
        "wait_seconds": pipeline.wait_seconds,
        "sql_seconds": pipeline.write_seconds,
    }


def _cpu_runs(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system of the child process) milliseconds of ``runs`` runs of a
    command; CPU time is what the command itself costs, steadier than wall on a shared machine."""
    import resource

    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        _check(args)
        wall.append((time.perf_counter() - t) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    return wall, cpu


def _time_runs(fn: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _ms(values: list[float]) -> tuple[float | None, float | None]:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return (round(p50, 1) if p50 is not None else None, round(p99, 1) if p99 is not None else None)


def run(plays: int, runs: int = RUNS, progress: bool = True, database_url: str | None = None) -> dict[str, Any]:
    from sqlalchemy import func, select, text

    from ledger.db import make_engine, upgrade
    from ledger.models import Play
    from ledger.statements import parse_period, statement
    from tests.support import postgres_database

    with postgres_database("ledger_bench_w3") if database_url is None else _given(database_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        synth = synthesise(engine, plays, progress)
        cat = synth["catalogue"]
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        with engine.connect() as conn:
            indexed = int(conn.execute(select(func.coalesce(func.sum(Play.count), 0))).scalar_one())
        if indexed != synth["plays"]:
            raise RuntimeError(f"indexed {indexed} plays of {synth['plays']}")
        artist = cat.artists[0]
        cases = [
            ("label, one month", cat.label, MONTH, {"library": "< 100 ms", "CLI": "< 500 ms"}),
            ("label, all time", cat.label, "all", {"library": "< 200 ms"}),
            ("artist (10 works), one month", artist, MONTH, {}),
            ("artist (10 works), all time", artist, "all", {}),
        ]
        figures = []
        rows_per_s = synth["play_rows"] / max(1e-9, synth["index_seconds"])
        figures.append(
            figure(
                "indexer write rate (projection + SQL), PostgreSQL",
                round(rows_per_s),
                "play rows/s",
                ">= 100,000 rows/s",
                f"{synth['play_rows']:,} rows in {synth['index_seconds']:.1f} s: {synth['handler_seconds']:.1f} s "
                f"projection + {synth['wait_seconds']:.1f} s waiting for the writer thread, which spent "
                f"{synth['sql_seconds']:.1f} s in SQL",
            )
        )
        figures.append(
            figure(
                "indexer SQL write alone, PostgreSQL",
                round(synth["play_rows"] / max(1e-9, synth["sql_seconds"])),
                "play rows/s",
            )
        )
        cli = [sys.executable, "-m", "ledger", "--database-url", url]
        bar_total = len(cases) * 2 + 1
        from tqdm import tqdm

        bar = tqdm(total=bar_total, desc="W3 statements", disable=not progress)
        for name, payee, period, targets in cases:
            p = parse_period(period)
            st = statement(engine, payee, p)
            if not st.rows:
                raise RuntimeError(f"{name}: empty statement")
            lib = _time_runs(lambda payee=payee, p=p: statement(engine, payee, p), runs)
            bar.update()
            args = [*cli, "statement", "--payee", payee, "--period", period, "--format", "csv"]
            end_to_end, cli_cpu = _cpu_runs(args, runs)
            bar.update()
            for how, values in (("library", lib), ("CLI", end_to_end)):
                p50, p99 = _ms(values)
                figures.append(figure(f"statement, {name}, {how}, p50", p50, "ms", ""))
                figures.append(figure(f"statement, {name}, {how}, p99", p99, "ms", targets.get(how, "")))
            p50, p99 = _ms(cli_cpu)
            figures.append(
                figure(f"statement, {name}, CLI CPU time, p50", p50, "ms", "", "user + system of the process")
            )
        version, version_cpu = _cpu_runs([sys.executable, "-m", "ledger", "--version"], runs)
        bar.update()
        bar.close()
        p50, p99 = _ms(version)
        figures.append(figure("ledger --version, p50", p50, "ms"))
        figures.append(figure("ledger --version, p99", p99, "ms", "< 300 ms"))
        p50, p99 = _ms(version_cpu)
        figures.append(figure("ledger --version, CPU time, p50", p50, "ms", "", "user + system of the process"))
        with engine.connect() as conn:
            sizes = {}
            if engine.dialect.name == "postgresql":
                for table in ("plays", "work_period_stats"):
                    sizes[table] = conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
        engine.dispose()
    return {
        "params": {
            "plays": synth["plays"],
            "batches": synth["batches"],
            "play_rows": synth["play_rows"],
            "works": WORKS,
            "runs": runs,
            "month": MONTH,
            "table_bytes": sizes,
        },
        "figures": figures,
    }


def _check(args: list[str]) -> None:
    subprocess.run(args, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class _given:
    def __init__(self, url: str):
        self.url = url

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def main(smoke: bool, plays: int | None = None, runs: int | None = None) -> dict[str, Any]:
    plays = plays or (20_000 if smoke else 10_000_000)
    runs = runs or (3 if smoke else RUNS)
    return run(plays, runs)
