"""Writes docs/benchmarks.md from the JSON reports the benchmark runs leave in reports/.

python scripts/bench_report.py        (make bench runs it after the workloads)
"""

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gas_section(report):
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


def main():
    gas_file = ROOT / "reports" / "gas_w1.json"
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (scripts/bench_report.py); do not edit by hand. Targets are in",
        "docs/gas.md and the design notes; figures here are measured, never asserted by tests.",
        "",
        f"Last written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"Python {platform.python_version()}.",
        "",
    ]
    if gas_file.exists():
        report = json.loads(gas_file.read_text())
        if report.get("mode") != "full":
            sys.exit("reports/gas_w1.json is from a smoke run; run `make gas` first")
        out += gas_section(report)
    else:
        out.append("No gas report yet: run `make gas`.")
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join(out) + "\n")
    print("written docs/benchmarks.md")


if __name__ == "__main__":
    main()
