"""Start-up of the `ledger` command: wall time of `ledger --version` and of `ledger statement`.

Runs each command N times in fresh interpreters (as a user would) and prints wall p50 and p99 and
the CPU time the command used (steadier than wall time on a loaded machine),
and which heavy packages the command imported. ``--tree DIR`` runs another checkout's package
(e.g. an export of main) with the same interpreter, for a before/after comparison.

    python bench/cli_startup.py [-n 20] [--database-url URL] [--tree DIR]

Without ``--database-url`` the statement runs against a fresh, migrated SQLite file (start-up
and an empty index: what is measured is the command's own overhead, not the query).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAYEE = "0x" + "ab" * 20
HEAVY = ("web3", "eth_utils", "paho", "sqlalchemy")
PROBE = f"""
import runpy, sys
sys.argv = ["ledger"] + sys.argv[1:]
try:
    runpy.run_module("ledger", run_name="__main__")
except SystemExit:
    pass
print(" ".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
"""


def timed(cmd: list[str], env: dict[str, str], n: int) -> tuple[list[float], list[float]]:
    """Wall seconds and CPU seconds (user + system of the child) of ``n`` runs."""
    walls, cpus = [], []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"], check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def show(label: str, runs: tuple[list[float], list[float]]) -> None:
    walls, cpus = runs
    ms = sorted(t * 1000 for t in walls)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    cpu = statistics.median(cpus) * 1000
    print(
        f"{label:40} n={len(ms)}  wall p50 {statistics.median(ms):7.1f} ms  p99 {p99:7.1f} ms"
        f"  CPU p50 {cpu:7.1f} ms  (load average {os.getloadavg()[0]:.1f})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--database-url", help="index to run the statement on (default: a fresh SQLite file)")
    p.add_argument("--payee", default=PAYEE)
    p.add_argument("--period", default="2026-11")
    p.add_argument("--tree", type=Path, default=ROOT, help="checkout whose ledger package to run")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
    ledger = [sys.executable, "-m", "ledger"]
    with tempfile.TemporaryDirectory() as tmp:
        db = args.database_url or f"sqlite:///{tmp}/ledger.sqlite3"
        if not args.database_url:
            subprocess.run(ledger + ["--database-url", db, "db", "upgrade"], env=env, cwd=args.tree, check=True)
        probe = PROBE
        for label, words in (
            ("ledger --version", ["--version"]),
            (
                f"ledger statement --period {args.period}",
                ["--database-url", db, "statement", "--payee", args.payee, "--period", args.period, "--format", "json"],
            ),
        ):
            show(label, timed(ledger + words, env, args.n))
            loaded = (
                subprocess.run(
                    [sys.executable, "-c", probe, *words],
                    env=env,
                    cwd=args.tree,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stderr.strip()
                .splitlines()[-1:]
            )
            print(f"{'':40} imports: {loaded[0] if loaded and loaded[0] else '(none of ' + ', '.join(HEAVY) + ')'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
