"""Slither on the contracts, through the solc-js shim; fails on any untriaged High or Medium.

Run by the tools virtualenv's Python (`make slither`). Standard library only.

1. Writes a standard-JSON input (build/slither/input.json) naming every .sol file under
   contracts/, with the optimizer and evmVersion of brownie-config.yaml and the remapping
   `@openzeppelin/=node_modules/@openzeppelin/` (brownie's own modes crash on OpenZeppelin's
   re-export files, and the shim only speaks --version and --standard-json).
2. Runs `slither input.json --solc .solc/solc-v<version> --compile-force-framework solc-json
   --filter-paths "node_modules|contracts/test" --json -`.
3. Keys each finding as (detector, location) where the location names no line numbers:
   `<Contract>.<function>` for a finding in a function, `<Contract>.<function>.<variable>` for a
   local variable, `<Contract>.<variable>` for a state variable. <Contract> is the name of the
   .sol file that holds the code (one contract per file here), so a finding inherited by
   RoyaltyLedger or by the test harness keys the same; a Yul function inside `_run` is keyed by
   its own name.
4. Compares High and Medium findings with tools/slither-triage.json and prints a table.

Exit status: 0 when every High and Medium is triaged, 1 when one is not, 2 when Slither fails.
`--from-json FILE` re-checks a saved Slither JSON output without compiling again.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "slither"
TRIAGE = ROOT / "tools" / "slither-triage.json"
FILTER_PATHS = "node_modules|contracts/test"
GATED = ("High", "Medium")
SEVERITIES = ("High", "Medium", "Low", "Informational", "Optimization")


def _config_value(text: str, key: str) -> str:
    """A scalar from brownie-config.yaml (its compiler block is flat enough for a regex)."""
    match = re.search(rf"^\s*{key}:\s*([^\s#]+)", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"slither_check: {key} not found in brownie-config.yaml")
    return match.group(1)


def compiler_settings() -> tuple[str, dict]:
    """The solc version and the settings brownie compiles with."""
    text = (ROOT / "brownie-config.yaml").read_text()
    optimizer = text.split("optimizer:", 1)[1]
    settings = {
        "optimizer": {
            "enabled": _config_value(optimizer, "enabled") == "true",
            "runs": int(_config_value(optimizer, "runs")),
        },
        "evmVersion": _config_value(text, "evm_version"),
        "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"],
        "outputSelection": {
            "*": {"*": ["abi", "evm.bytecode", "evm.deployedBytecode", "evm.methodIdentifiers"], "": ["ast"]}
        },
    }
    return _config_value(text, "version"), settings


def write_input() -> tuple[Path, str]:
    version, settings = compiler_settings()
    sources = {
        path.relative_to(ROOT).as_posix(): {"urls": [path.relative_to(ROOT).as_posix()]}
        for path in sorted((ROOT / "contracts").rglob("*.sol"))
    }
    BUILD.mkdir(parents=True, exist_ok=True)
    target = BUILD / "input.json"
    target.write_text(json.dumps({"language": "Solidity", "sources": sources, "settings": settings}, indent=1))
    return target, version


def run_slither(input_file: Path, version: str) -> dict:
    solc = ROOT / ".solc" / f"solc-v{version}"
    slither = Path(sys.executable).parent / "slither"
    command = [
        str(slither),
        str(input_file.relative_to(ROOT)),
        "--solc",
        str(solc.relative_to(ROOT)),
        "--compile-force-framework",
        "solc-json",
        "--filter-paths",
        FILTER_PATHS,
        "--json",
        "-",
    ]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    try:
        output = json.loads(proc.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(2) from None
    if not output.get("success"):
        sys.stderr.write(f"slither failed: {output.get('error')}\n{proc.stderr[-4000:]}")
        raise SystemExit(2)
    (BUILD / "output.json").write_text(json.dumps(output, indent=1))
    return output


def _stem(element: dict) -> str:
    return Path(element["source_mapping"]["filename_relative"]).stem


def _parent(element: dict) -> dict:
    return element.get("type_specific_fields", {}).get("parent", {})


def _function_name(name: str) -> str:
    """`_run.asm_0.useNonceAndCharge()` -> `useNonceAndCharge`; `f(uint256)` -> `f`."""
    return name.split("(", 1)[0].split(".")[-1]


def location(finding: dict) -> str:
    """A location key without line numbers (see the module docstring)."""
    element = finding["elements"][0]
    kind, name, parent = element["type"], element["name"], _parent(element)
    if kind == "node":
        element, kind, name, parent = parent, parent.get("type"), parent.get("name", ""), _parent(parent)
    if kind == "function":
        return f"{_stem(element)}.{_function_name(name)}"
    if kind == "variable" and parent.get("type") == "function":
        function = _function_name(parent["name"])
        # A Yul local is named <var>_<outer function>_asm_<n>_<yul function>: drop the counter.
        variable = re.sub(rf"_asm_\d+_{re.escape(function)}$", "", name)
        return f"{_stem(element)}.{function}.{variable}"
    return f"{_stem(element)}.{name}"


def load_triage() -> dict[tuple[str, str], dict]:
    entries = json.loads(TRIAGE.read_text())
    triage = {}
    for entry in entries:
        missing = {"detector", "location", "severity", "justification"} - entry.keys()
        if missing:
            raise SystemExit(f"slither_check: triage entry {entry} lacks {sorted(missing)}")
        triage[(entry["detector"], entry["location"])] = entry
    return triage


def report(findings: list[dict], triage: dict[tuple[str, str], dict]) -> int:
    counts = Counter(f["impact"] for f in findings)
    gated = [f for f in findings if f["impact"] in GATED]
    untriaged, seen = [], set()
    for finding in gated:
        key = (finding["check"], location(finding))
        seen.add(key)
        entry = triage.get(key)
        if entry is None or entry["severity"] != finding["impact"]:
            untriaged.append((finding, key))
    print(f"{'severity':<14}{'findings':>9}{'triaged':>9}{'untriaged':>11}")
    for severity in SEVERITIES:
        n = counts.get(severity, 0)
        if severity in GATED:
            bad = sum(1 for f, _ in untriaged if f["impact"] == severity)
            print(f"{severity:<14}{n:>9}{n - bad:>9}{bad:>11}")
        elif n:
            print(f"{severity:<14}{n:>9}{'-':>9}{'-':>11}")
    for finding in gated:
        key = (finding["check"], location(finding))
        mark = "untriaged" if any(k == key for _, k in untriaged) else "triaged"
        print(f"  {finding['impact']:<7} {mark:<10} {key[0]} @ {key[1]}")
    for key in sorted(set(triage) - seen):
        print(f"  note: triage entry no longer reported: {key[0]} @ {key[1]}")
    if untriaged:
        print(f"\n{len(untriaged)} High/Medium finding(s) not in {TRIAGE.relative_to(ROOT)}:")
        for finding, key in untriaged:
            print(f"- {key[0]} @ {key[1]} ({finding['impact']})\n  {finding['description'].strip()}")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", type=Path, help="check a saved Slither JSON output instead")
    args = parser.parse_args()
    if args.from_json:
        output = json.loads(args.from_json.read_text())
    else:
        output = run_slither(*write_input())
    findings = output.get("results", {}).get("detectors", [])
    return report(findings, load_triage())


if __name__ == "__main__":
    sys.exit(main())
