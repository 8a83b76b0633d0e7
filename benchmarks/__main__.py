"""Run every benchmark, print the Markdown table and write it to benchmarks/results.md (I/O)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import cold_import, tunnel_speed
from benchmarks.rewrite_speed import cases, machine, measure, table, warm_up

__all__ = ["main"]

RESULTS = Path(__file__).with_name("results.md")


def main(argv: list[str] | None = None) -> int:
    """Measure every case and report.

    Args:
        argv: Command-line arguments (`--repeat N`, `--output PATH`, and for the tunnel benchmark
            `--tunnel-seconds S`, `--tunnel-rounds N`, `--load TOOL`); `sys.argv[1:]` when None.

    Returns:
        The exit status: 0, whether or not the targets were met (a benchmark reports, it does not judge).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per case; the best counts")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the Markdown")
    parser.add_argument("--tunnel-seconds", type=float, default=4.0, help="seconds of each tunnel load run")
    parser.add_argument("--tunnel-rounds", type=int, default=2, help="tunnel benchmark rounds; 0 skips it")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="tunnel load generator (auto: wrk if any)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    all_cases = cases()
    print("  warming up ...", file=sys.stderr, flush=True)
    warm_up(all_cases)
    measurements = []
    for case in all_cases:
        print(f"  {case.name} ...", file=sys.stderr, flush=True)
        measurements.append(measure(case, args.repeat))
    print("  Lambda handler cold import ...", file=sys.stderr, flush=True)
    imports = cold_import.measure(args.repeat)
    tunnel = ""
    if args.tunnel_rounds > 0:
        print("  tunnel throughput and latency ...", file=sys.stderr, flush=True)
        tunnel = "\n" + tunnel_speed.run(args.tunnel_seconds, args.tunnel_rounds, args.load)
    report = (
        "# Rewriting speed\n\n"
        f"{machine()}\n\n"
        f"Best of {args.repeat} calls after a warm-up, ours and the reference in turn; ratio = ours ÷ "
        f"reference; MB = 10^6 bytes of decoded input.\n\n{table(measurements)}\n"
        "\n# Lambda handler cold import\n\n"
        f"Best of {args.repeat} fresh interpreters, the handler's modules laid out as `tunnel package` ships "
        f"them (benchmarks/cold_import.py).\n\n{cold_import.cold_import_table(imports)}\n"
        f"{tunnel}"
    )
    print(report)
    args.output.write_text(report, encoding="utf-8")
    print(f"written to {args.output} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
