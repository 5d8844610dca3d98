"""docs/benchmarks.md from the results under docs/bench/ (w1.json, w2.json, w3.json).

The W1 gas tables come from the gas report embedded in w1.json (scripts/gas_w1.py's); without
one, the W1 section already in docs/benchmarks.md (an earlier ``make gas``) is kept as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .common import RESULTS, ROOT

DOC = ROOT / "docs" / "benchmarks.md"
W1_HEADING = "## W1 and W1-small: gas per reported play"


def _value(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _context(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    return [
        f"Command: `{doc['command']}`; {doc['date']}, git {doc['git_commit']}; {m['cores']} cores, "
        f"{m['ram_gib']} GiB RAM, {m['cpu']}, Python {m['python']}, load average {m['load_1m_at_start']} at the start.",
        "",
        f"Conditions: {doc['conditions']}",
        "",
    ]


def _figures(doc: dict[str, Any]) -> list[str]:
    lines = ["| figure | value | unit | target |", "|---|---:|---|---|"]
    for f in doc["figures"]:
        note = f" ({f['note']})" if f.get("note") else ""
        lines.append(f"| {f['figure']}{note} | {_value(f['value'])} | {f['unit']} | {f['target']} |")
    return [*lines, ""]


def _old_w1_section() -> list[str]:
    if not DOC.exists():
        return []
    text = DOC.read_text()
    start = text.find(W1_HEADING)
    if start < 0:
        return []
    rest = text[start + len(W1_HEADING) :]
    m = re.search(r"^## ", rest, flags=re.M)
    body = rest[: m.start()] if m else rest
    return [W1_HEADING, "", *body.strip("\n").split("\n"), ""]


def gas_section(report: dict[str, Any]) -> list[str]:
    """The W1 gas tables from scripts/gas_w1.py's report."""
    lines = [
        "## W1 and W1-small: gas per reported play",
        "",
        "Command: `make gas` (`python scripts/gas_w1.py`, brownie's `bench` network), Anvil 1.7.1",
        "(Osaka rules), solc 0.8.28, optimizer 200 runs. Receipt gasUsed, 21,000 per transaction",
        "included; calls packed by `ledger.playbatch.plan_calls` (at most 131,072 bytes of input)",
        "and split until `eth_estimateGas` is at most 15,000,000.",
        "",
        "| workload | batches | plays | transactions | gas/play | gas/batch | largest tx gas | largest tx bytes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["workloads"].items():
        lines.append(
            f"| {name} | {r['batches']:,} | {r['plays']:,} | {r['transactions']} | {r['gas_per_play']} "
            f"| {r['gas_per_batch']:,} | {r['largest_tx_gas']:,} | {r['largest_tx_bytes']:,} |"
        )
    lines += ["", "| function | gas |", "|---|---:|"]
    for name, gas in report["functions"].items():
        lines.append(f"| {name} | {gas:,} |")
    return lines


def _w1(doc: dict[str, Any] | None) -> list[str]:
    if doc is None:
        return _old_w1_section() or [W1_HEADING, "", "Not measured yet: `make bench W=1`.", ""]
    return [*gas_section(doc["gas_report"]), "", *_context(doc), *_figures(doc)]


def _w2(doc: dict[str, Any]) -> list[str]:
    out = [
        "## W2-large and W2-small: ingest throughput, latency and loss",
        "",
        *_context(doc),
        "| run | accepted batches/s | accepted plays/s | indexed batches/s | indexed plays/s | p50 s | p99 s "
        "| loss (plays) | plot |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["runs"]:
        plot = f"[png](bench/{r['plot']})" if r.get("plot") else ""
        out.append(
            f"| {r['run']} | {_value(r['accepted_batches_per_s'])} | {_value(r['accepted_plays_per_s'])} "
            f"| {_value(r['indexed_batches_per_s'])} | {_value(r['indexed_plays_per_s'])} "
            f"| {_value(r['latency_p50_s'])} | {_value(r['latency_p99_s'])} | {_value(r['loss_plays'])} | {plot} |"
        )
    out += [
        "",
        "Targets (W2-large and W2-small on one machine of 2 cores): W2-large >= 100,000 plays/s confirmed and "
        "indexed; W2-small >= 1,000 batches/s accepted and >= 500/s confirmed and indexed; p99 < 5 s; loss 0.",
        "",
    ]
    scale = [f for f in doc["figures"] if f["figure"].startswith("scale-out")]
    if scale:
        out += ["Scale-out (W2-small over HTTP on PostgreSQL, ratios to 1 ingest process and 1 relayer key):", ""]
        out += _figures({"figures": scale})
    if doc.get("errors"):
        out += ["Errors: " + "; ".join(doc["errors"]), ""]
    return out


def _w3(doc: dict[str, Any]) -> list[str]:
    p = doc["params"]
    return [
        "## W3: statements",
        "",
        *_context(doc),
        f"{p['plays']:,} plays in {p['batches']:,} batches ({p['play_rows']:,} play rows) over {p['works']:,} works, "
        f"indexed into PostgreSQL through the indexer's projection and writer; month {p['month']}; "
        f"{p['runs']} runs per figure.",
        "",
        *_figures(doc),
    ]


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write(path: Path = DOC) -> Path:
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/report.py) from the results in docs/bench/*.json; do not edit by hand.",
        "The workloads W1-W3 are fixed (seed 42). Figures are measured, never asserted by tests; each section",
        "names its command, date, machine and commit, and the conditions it was measured under.",
        "",
    ]
    out += _w1(load("w1"))
    w2 = load("w2")
    out += _w2(w2) if w2 else ["## W2", "", "Not measured yet: `make bench W=2`.", ""]
    w3 = load("w3")
    out += _w3(w3) if w3 else ["## W3", "", "Not measured yet: `make bench W=3`.", ""]
    path.write_text("\n".join(out).rstrip("\n") + "\n")
    return path
