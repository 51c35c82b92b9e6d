"""Benchmark: the same federation with the embedding cache on and off.

"on" (the default path) embeds every sample once, then trains heads on the
cached embeddings; "off" runs every training image through the frozen backbone
in every local epoch of every round, as a plain Flower example would. Each
mode starts from an empty cache dir, so "on" pays for its embedding pass.

    python -m simulations.bench_embedding_cache --set data-path=... weights=...

Prints both wall times and their ratio, and writes JSON next to the runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedge import rundir
from simulations.benchkit import ACCEPTANCE_JOB


def run_mode(mode: str, overrides: dict[str, str], out: Path) -> dict[str, object]:
    """One `fedge simulate` process; wall time measured around the whole process."""
    run_dir = out / f"cache-{mode}"
    with tempfile.TemporaryDirectory(prefix=f"fedge-bench-{mode}-") as cache:
        values = {**ACCEPTANCE_JOB, **overrides, "embedding-cache": mode, "cache-dir": cache}
        cmd = [sys.executable, "-m", "fedge.cli.main", "simulate", "--run-dir", str(run_dir)]
        cmd += ["--set", *(f"{k}={v}" for k, v in values.items())]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
    summary = rundir.read_summary(run_dir)
    return {
        "mode": mode,
        "wall_seconds": wall,
        "final_accuracy": summary["final_accuracy"],
        "seconds_per_round": summary["seconds_per_round"],
        "run_dir": str(run_dir),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of the acceptance job (data-path, weights, ...)",
    )
    parser.add_argument("--out", default="runs/bench-embedding-cache", help="output folder")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_mode(mode, overrides, out) for mode in ("disk", "off")]
    on, off = rows
    ratio = off["wall_seconds"] / on["wall_seconds"]  # type: ignore[operator]
    result = {"job": {**ACCEPTANCE_JOB, **overrides}, "runs": rows, "off_over_on": ratio}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print("| embedding cache | wall time (s) | s/round | final accuracy |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        label = "on (default)" if row["mode"] == "disk" else "off"
        print(
            f"| {label} | {row['wall_seconds']:.1f} | {row['seconds_per_round']:.2f} "
            f"| {row['final_accuracy']:.3f} |"
        )
    print(f"\ncache off / cache on wall time: {ratio:.1f}x  (results: {out / 'result.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
