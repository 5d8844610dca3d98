"""The benchmark harness of `make bench`: the fixed workloads W1-W3 (seed 42) and the report.

    python -m bench.run [--workload 1|2|3 ...] [--smoke]

Each workload writes one JSON result (figures, the command, date, machine, git commit) and
docs/benchmarks.md is rewritten from all of them (bench.report). Nothing here asserts a timing.
"""
