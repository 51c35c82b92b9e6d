"""Benchmark: time to a target accuracy on the core acceptance job, fedge's
default path versus a plain Flower-example-style baseline, in the same run.

Arms (each a fresh process, timed from its launch, start-up included):

- ``baseline``: :mod:`simulations.baseline_app` on Flower's Ray engine: the
  backbone runs over every image every local epoch, the whole model travels
  both ways each round, the server evaluates the model on images.
- ``default``: ``fedge simulate`` as configured by default (Ray engine, disk
  embedding cache), starting from an empty cache: its one embedding pass is
  part of the time.
- ``inprocess``: the same with ``simulation-backend = inprocess``.

Both train the same head on the same samples with the same batch order, so
they reach the same accuracy in the same round; the ratio is the cost.

    python -m simulations.bench_time_to_accuracy --data-path /tmp/fedge-data/cifar10-jpg
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from fedge.config import parse_set_items
from simulations.benchkit import (
    ACCEPTANCE_JOB,
    DEFAULT_WEIGHTS,
    launch_arm,
    machine_note,
    markdown_table,
    write_json,
)

ARMS = ("baseline", "default", "inprocess")


def job(args: argparse.Namespace, cache_dir: str, run_dir: str) -> dict[str, Any]:
    """The core acceptance job (README / issue 2)."""
    return {
        **ACCEPTANCE_JOB,
        "data-path": args.data_path,
        "weights": args.weights,
        "device": "cpu",
        "cache-dir": cache_dir,
        "run-dir": run_dir,
    }


def to_targets(
    arm: str, rows: list[dict[str, Any]], targets: list[float], started: float
) -> dict[str, Any]:
    """Seconds, CPU seconds (the arm's process tree) and rounds to each target."""
    result: dict[str, Any] = {"arm": arm, "rounds": len(rows)}
    for target in targets:
        hit = [r for r in rows if r["accuracy"] is not None and r["accuracy"] >= target]
        result[f"s to {target:g}"] = hit[0]["time"] - started if hit else None
        result[f"CPU s to {target:g}"] = hit[0]["cpu_seconds"] if hit else None
        result[f"round to {target:g}"] = hit[0]["round"] if hit else None
    return result


def cpu_table(work: Path, targets: list[float]) -> str:
    """Rounds and CPU seconds to each target from a finished run's round logs
    (``rounds-ARM.json`` in its work directory)."""
    results = []
    for arm in ARMS:
        log = work / f"rounds-{arm}.json"
        if log.exists():
            rows = json.loads(log.read_text())
            results.append(to_targets(arm, rows, targets, rows[0]["time"]))
    columns = ["arm", "rounds"]
    columns += [f"{k} to {t:g}" for t in targets for k in ("round", "CPU s")]
    ratios = ratio_rows(results, targets, ("CPU s",))
    return "\n\n".join([markdown_table(results, columns), markdown_table(ratios, list(ratios[0]))])


def ratio_rows(
    results: list[dict[str, Any]], targets: list[float], kinds: tuple[str, ...] = ("s", "CPU s")
) -> list[dict[str, Any]]:
    """The baseline's seconds to each target over each fedge arm's."""
    by_arm = {r["arm"]: r for r in results}
    rows = []
    for arm in ("default", "inprocess"):
        if "baseline" in by_arm and arm in by_arm:
            row: dict[str, Any] = {"ratio": f"baseline / {arm}"}
            for kind in kinds:
                for t in targets:
                    a, b = by_arm["baseline"][f"{kind} to {t:g}"], by_arm[arm][f"{kind} to {t:g}"]
                    row[f"{kind} to {t:g}"] = a / b if a and b else None
            rows.append(row)
    return rows


def launch(args: argparse.Namespace, arm: str, work: Path) -> dict[str, Any]:
    cache = work / f"cache-{arm}"  # empty: the default path's embedding pass counts
    values = {**job(args, str(cache), str(work / f"run-{arm}")), **parse_set_items(args.set)}
    if arm == "baseline":
        values["num-rounds"] = args.baseline_rounds
    if arm == "inprocess":
        values["simulation-backend"] = "inprocess"
    ran = launch_arm(
        values,
        work / f"rounds-{arm}.json",
        kind="baseline" if arm == "baseline" else "fedge",
        stop_at=max(args.targets) if arm == "baseline" else None,
        timeout=args.timeout,
    )
    rows = ran.rows
    result = {**to_targets(arm, rows, args.targets, ran.started), "wall s": ran.wall_seconds}
    clients = sum(r["num_clients"] for r in rows)
    result["final acc"] = rows[-1]["accuracy"]
    result["up KB/client/round"] = sum(r["bytes_up"] for r in rows) / max(1, clients) / 1000
    result["CPU s"] = rows[-1]["cpu_seconds"]
    result["peak PSS MB"] = ran.memory["peak_pss_mb"]
    result["accuracy_by_round"] = [r["accuracy"] for r in rows]
    result["seconds_by_round"] = [r["time"] - ran.started for r in rows]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default="/tmp/fedge-data/cifar10-jpg")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--targets", default="0.58,0.65,0.68")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--baseline-rounds", type=int, default=5)
    p.add_argument("--timeout", type=float, default=7200)
    p.add_argument("--set", nargs="*", default=[], help="override job keys (KEY=VALUE)")
    p.add_argument("--out", default="runs/bench/time_to_accuracy.json")
    p.add_argument(
        "--cpu-from",
        type=Path,
        help="only print CPU seconds to the targets "
        "from the round logs of a finished run's work directory (/tmp/tta-*)",
    )
    args = p.parse_args(argv)
    args.targets = [float(t) for t in args.targets.split(",")]
    if args.cpu_from:
        print(cpu_table(args.cpu_from, args.targets))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tta-"))
    before = machine_note()
    results = []
    for arm in args.arms.split(","):
        results.append(launch(args, arm, work))
        print(f"{arm}: {results[-1]}", flush=True)
    columns = ["arm", "rounds", *[f"s to {t:g}" for t in args.targets]]
    columns += [f"CPU s to {t:g}" for t in args.targets] + ["final acc"]
    columns += ["up KB/client/round", "wall s", "CPU s", "peak PSS MB"]
    print("\n" + markdown_table(results, columns))
    ratios = ratio_rows(results, args.targets)
    if ratios:
        print("\n" + markdown_table(ratios, list(ratios[0])))
    note = {"before": before, "after": machine_note()}
    write_json(Path(args.out), {"results": results, "ratios": ratios, "machine": note})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
