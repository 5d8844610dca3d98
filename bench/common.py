"""What every workload shares: the seeded W1 catalogue draws, the machine and commit a result was
measured on, and writing a result file."""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "bench"  # full runs: results kept in the repo
SMOKE_RESULTS = ROOT / "reports" / "bench"  # smoke runs (make test): never in docs
SEED = 42
ZIPF_S = 1.1


def zipf_weights(n: int, s: float = ZIPF_S) -> list[float]:
    return [1 / (k**s) for k in range(1, n + 1)]


def draw_batch(rng: random.Random, weights: list[float], plays: int, distinct: int) -> dict[int, int]:
    """``plays`` plays over ``distinct`` works (ids 1..len(weights)), both drawn with the Zipf
    weights: the batch shape of WORKLOAD.md, as scripts/gas_w1.py draws it."""
    ids = list(range(1, len(weights) + 1))
    chosen: set[int] = set()
    while len(chosen) < distinct:
        chosen.add(rng.choices(ids, weights=weights)[0])
    ordered = sorted(chosen)
    w = [weights[i - 1] for i in ordered]
    counts = dict.fromkeys(ordered, 1)
    for work in rng.choices(ordered, weights=w, k=plays - distinct):
        counts[work] += 1
    return counts


def machine() -> dict[str, Any]:
    """Cores, RAM and CPU model of this machine, and its load when the run started."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1),
        "cpu": model,
        "python": platform.python_version(),
        "load_1m_at_start": round(load[0], 2),
    }


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout
        return commit + ("+dirty" if dirty.strip() else "")  # results and docs written by a run do not count
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def command_line() -> str:
    args = [a for a in sys.argv[1:]]
    return "python -m bench.run " + shlex.join(args) if args else "python -m bench.run"


def figure(name: str, value: float | int | None, unit: str, target: str = "", note: str = "") -> dict[str, Any]:
    return {"figure": name, "value": value, "unit": unit, "target": target, "note": note}


def write_result(name: str, result: dict[str, Any], smoke: bool, conditions: str, command: str) -> Path:
    """Writes ``<name>.json`` (docs/bench/, or reports/bench/ for a smoke run) with the run's context."""
    out = (SMOKE_RESULTS if smoke else RESULTS) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "workload": name,
        "mode": "smoke" if smoke else "measured",
        "conditions": conditions,
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "git_commit": git_commit(),
        **result,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]
