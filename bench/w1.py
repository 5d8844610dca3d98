"""W1 and W1-small: gas per reported play, measured by scripts/gas_w1.py (``make gas``).

This wraps it: runs it (full, or ``--smoke``), then turns its report (reports/gas_w1.json) into
a benchmark result. The detailed gas tables of docs/benchmarks.md still come from that report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .common import ROOT, figure

REPORT = ROOT / "reports" / "gas_w1.json"


def main(smoke: bool, rerun: bool = True) -> dict[str, Any]:
    if rerun or not REPORT.exists():
        args = [sys.executable, "scripts/gas_w1.py", *(["--smoke"] if smoke else [])]
        subprocess.run(args, cwd=ROOT, check=True)
    report = json.loads(REPORT.read_text())
    if (report.get("mode") == "smoke") != smoke:
        raise RuntimeError(f"{REPORT.name} is from a {report.get('mode')} run")
    figures = []
    for name, r in report["workloads"].items():
        target = ""
        if name == "W1 round 2":
            target = "<= 20 (aim 15)"
        elif name == "W1-small round 2":
            target = "<= 700 (aim 500)"
        figures.append(figure(f"{name}: gas per play", r["gas_per_play"], "gas", target))
        figures.append(figure(f"{name}: gas per batch", r["gas_per_batch"], "gas"))
    return {"params": {"gas_report": "reports/gas_w1.json", "seconds": report.get("seconds")}, "figures": figures}
