"""``make bench`` / ``make bench W=1|2|3``: runs the workloads and rewrites docs/benchmarks.md.

    python -m bench.run                      # W1, W2, W3 at full size
    python -m bench.run -w 2 --duration 20   # W2 only, 20 s per run
    python -m bench.run --smoke              # every workload, tiny (make test): results in reports/bench/

Full runs write docs/bench/w<N>.json (and W2's PNG plots) and docs/benchmarks.md; a smoke run
writes reports/bench/ only. ``--conditions`` says under what the figures were measured (a quiet
machine, or not). Exits non-zero when a W2 run loses a play.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from . import report
from .common import RESULTS, SMOKE_RESULTS, command_line, write_result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("-w", "--workload", action="append", choices=("1", "2", "3"), help="default: all three")
    p.add_argument("--smoke", action="store_true", help="tiny runs of the same code (make test)")
    p.add_argument("--conditions", default="", help="what else ran on the machine (written with the figures)")
    g = p.add_argument_group("W2")
    g.add_argument("--duration", type=float, help="seconds of sending per run (default 60; smoke 4)")
    g.add_argument("--drain-timeout", type=float, help="seconds to wait for the system to drain (default 600)")
    g.add_argument("--device-procs", type=int, default=2, help="device worker processes (default 2)")
    g.add_argument("--shapes", default="large,small", help="W2 shapes: large,small")
    g.add_argument("--transports", default="http,mqtt")
    g.add_argument("--dbs", default="postgresql,sqlite")
    g.add_argument("--no-scale", action="store_true", help="skip the scale-out runs")
    g = p.add_argument_group("W3")
    g.add_argument("--plays", type=int, help="W3 plays (default 10,000,000; smoke 20,000)")
    g.add_argument("--runs", type=int, help="W3 runs per statement figure (default 20; smoke 3)")
    g = p.add_argument_group("W1")
    g.add_argument("--reuse-gas-report", action="store_true", help="use reports/gas_w1.json as it is")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so every stack, Anvil and database a run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workloads = args.workload or ["1", "2", "3"]
    smoke = args.smoke
    conditions = args.conditions or ("smoke run" if smoke else "not stated")
    command = command_line()
    failed = False
    for w in workloads:
        started = time.monotonic()
        if w == "1":
            from . import w1

            result = w1.main(smoke, rerun=not args.reuse_gas_report)
            if not smoke:
                import json

                result["gas_report"] = json.loads(w1.REPORT.read_text())
        elif w == "2":
            from . import w2

            result = w2.main(
                smoke,
                duration=args.duration,
                drain_timeout=args.drain_timeout,
                procs=args.device_procs,
                shapes=tuple(args.shapes.split(",")),
                transports=tuple(args.transports.split(",")),
                dbs=tuple(args.dbs.split(",")),
                scale=not args.no_scale,
                plot_dir=SMOKE_RESULTS if smoke else RESULTS,
            )
            failed |= bool(result["errors"])
        else:
            from . import w3

            result = w3.main(smoke, plays=args.plays, runs=args.runs)
        result["seconds"] = round(time.monotonic() - started, 1)
        path = write_result(f"w{w}", result, smoke, conditions, command)
        print(f"W{w}: {result['seconds']} s, written {path}", flush=True)
    if not smoke:
        print(f"written {report.write()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
