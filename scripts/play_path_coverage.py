"""Line and branch coverage of the play path (PlayReporting.submitBatches and the Yul it runs),
from the program counters the differential test reached.

    PLAY_PATH_COVERAGE=reports/play_path_pcs.json brownie test \\
        tests/contracts/test_play_path_differential.py --network contract-tests -p no:cacheprovider
    python scripts/play_path_coverage.py reports/play_path_pcs.json

brownie's own coverage reports nothing here (it maps Solidity statements, and the play path is
one inline-assembly statement; on Anvil it reports nothing at all), so this maps opcodes instead:
the build artifact's pcMap gives each opcode of the deployed harness ledger its source range.
A source line of the play path counts as covered when an opcode mapped to it (by where its
range starts) ran; a branch is one direction of a JUMPI mapped to the play path, so each
JUMPI counts twice (taken and not taken). The optimizer shares and reorders code, so these are
opcode-level figures: close to, not the same as, what a source-level tool would count.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "build" / "contracts" / "RoyaltyLedgerHarness.json"
SOURCE = "contracts/ledger/PlayReporting.sol"
#: The functions of the play path (everything submitBatches runs in PlayReporting.sol).
FUNCTIONS = ("submitBatches", "_newContext", "_run", "_flushWorks", "_emitRecords")


def function_ranges(data):
    """(name, start, end) byte ranges of FUNCTIONS in the source (bytes), by brace matching."""
    ranges = []
    for name in FUNCTIONS:
        start = data.index(f"function {name}(".encode())
        depth, i = 0, data.index(b"{", start)
        while True:
            if data[i : i + 1] == b"{":
                depth += 1
            elif data[i : i + 1] == b"}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        ranges.append((name, start, i + 1))
    return ranges


def main(pcs_file):
    artifact = json.loads(ARTIFACT.read_text())
    source_id = next(k for k, v in artifact["allSourcePaths"].items() if v == SOURCE)
    data = (ROOT / SOURCE).read_bytes()
    ranges = function_ranges(data)
    reached = {int(pc): set(seen) for pc, seen in json.loads(Path(pcs_file).read_text()).items()}

    def line_of(offset):
        return data[:offset].count(b"\n") + 1

    lines, covered_lines = set(), set()
    branches, taken = 0, 0
    missed_branches = []
    per_function = {name: [set(), set(), 0, 0] for name, _, _ in ranges}
    for pc, info in artifact["pcMap"].items():
        if info.get("path") != source_id or not info.get("offset"):
            continue
        start = info["offset"][0]
        name = next((n for n, a, b in ranges if a <= start < b), None)
        if name is None:
            continue
        line = line_of(start)
        seen = reached.get(int(pc), set())
        stats = per_function[name]
        lines.add(line)
        stats[0].add(line)
        if seen:
            covered_lines.add(line)
            stats[1].add(line)
        if info["op"] == "JUMPI":
            branches += 2
            stats[2] += 2
            hit = len(seen & {"jump", "fall"})
            taken += hit
            stats[3] += hit
            if hit < 2:
                missed_branches.append((line, sorted({"jump", "fall"} - seen)))
    print(f"play path ({SOURCE}: {', '.join(FUNCTIONS)})")
    print(f"  lines:    {len(covered_lines)} of {len(lines)} ({100 * len(covered_lines) / len(lines):.1f} %)")
    print(f"  branches: {taken} of {branches} JUMPI directions ({100 * taken / branches:.1f} %)")
    for name, (ls, cl, b, t) in per_function.items():
        if ls:
            print(f"    {name:<14} lines {len(cl)}/{len(ls)}  branches {t}/{b}")
    never = sorted(lines - covered_lines)
    print(f"  lines never reached: {never}")
    print(f"  JUMPIs with a direction never taken (line, direction): {sorted(missed_branches)}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
