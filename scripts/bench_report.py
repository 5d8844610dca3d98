"""Rewrites docs/benchmarks.md from the results in docs/bench/ (bench/report.py does it; make bench calls it).

python scripts/bench_report.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    sys.path.insert(0, str(ROOT))
    from bench import report

    print(f"written {report.write()}")


if __name__ == "__main__":
    main()
