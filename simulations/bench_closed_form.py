"""Benchmark: the one-round closed-form head versus FedAvg under label skew
(Dirichlet 0.1 and 1.0), next to a centralized linear probe on the same samples.

The job is the core acceptance job (CIFAR-10, MobileNetV2 at 128 px, 10
clients with at most 200 training samples each, 1,000 held-out test images)
at each ``dirichlet-alpha``; every federation runs as a fresh ``fedge
simulate`` process on the in-process backend (same results as Ray, faster).

    python -m simulations.bench_closed_form --data-path /tmp/fedge-data/cifar10-jpg

Columns: accuracy on the server's held-out split after the last round and at
its best; ``round to probe-1pt``: first round within one point of the probe;
``up KB/client`` = bytes a client sent over the whole run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedge.closed_form import ClassStatistics, solve_head
from fedge.config import FedgeConfig
from simulations import probe
from simulations.benchkit import (
    ACCEPTANCE_JOB,
    DEFAULT_WEIGHTS,
    machine_note,
    markdown_table,
    simulate,
    write_json,
)

COLUMNS = [
    "alpha",
    "method",
    "rounds",
    "final acc",
    "best acc",
    "probe acc",
    "gap to probe (pt)",
    "round to probe-1pt",
    "up KB/client",
    "wall s",
]


def base_job(args: argparse.Namespace, alpha: float) -> dict[str, Any]:
    return {
        **ACCEPTANCE_JOB,
        "data-path": args.data_path,
        "weights": args.weights,
        "dirichlet-alpha": alpha,
        "device": "cpu",
        "cache-dir": args.cache_dir,
        "simulation-backend": "inprocess",
    }


def methods(rounds: int, init_rounds: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("fedavg", {"strategy": "fedavg", "num-rounds": rounds}),
        ("closed-form (lda)", {"strategy": "closed-form"}),
        ("closed-form (ridge)", {"strategy": "closed-form", "closed-form-solver": "ridge"}),
        (
            "init closed-form + fedavg",
            {"strategy": "fedavg", "init": "closed-form", "num-rounds": init_rounds},
        ),
        (
            "init closed-form + fedprox",
            {"strategy": "fedprox", "init": "closed-form", "num-rounds": init_rounds},
        ),
    ]


def references(values: dict[str, Any]) -> dict[str, float]:
    """Centralized figures on the pooled training samples of the same clients."""
    cfg = FedgeConfig.from_mapping(values)
    train, test = probe.pooled_train(cfg), probe.held_out(cfg)
    classes = int(max(train.y.max(), test.y.max())) + 1
    out = {"probe": probe.accuracy(*probe.logistic_probe(train.x, train.y, classes), test)}
    for l2 in (1e-3, 1e-2):  # the probe's own sensitivity to its regularization
        head = probe.logistic_probe(train.x, train.y, classes, l2=l2)
        out[f"probe l2={l2:g}"] = probe.accuracy(*head, test)
    stats = ClassStatistics.of(train.x, train.y, classes, origin=test.x.mean(0))
    for shrinkage in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
        head = solve_head(stats, "lda", shrinkage)
        out[f"pooled lda shrinkage={shrinkage:g}"] = probe.accuracy(*head, test)
    out["train_samples"] = float(len(train.y))
    return out


def summarize(alpha: float, name: str, m: Any, probe_acc: float, clients: int) -> dict[str, Any]:
    rows = m.rows
    accs = np.asarray([r["accuracy"] for r in rows])
    within = np.flatnonzero(accs >= probe_acc - 0.01)
    return {
        "alpha": alpha,
        "method": name,
        "rounds": len(rows),
        "final acc": float(accs[-1]),
        "best acc": float(accs.max()),
        "probe acc": probe_acc,
        "gap to probe (pt)": 100 * (float(accs[-1]) - probe_acc),
        "round to probe-1pt": int(rows[within[0]]["round"]) if len(within) else "-",
        "up KB/client": sum(r["bytes_up"] for r in rows) / clients / 1000,
        "wall s": m.wall_seconds,
        "accuracy_by_round": accs.tolist(),
        "run_dir": str(m.run_dir),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default="/tmp/fedge-data/cifar10-jpg")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--cache-dir", default="/tmp/fedge-cache-scale")
    p.add_argument("--alphas", default="0.1,1.0")
    p.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
    p.add_argument("--init-rounds", type=int, default=5, help="rounds after a closed-form init")
    names = [name for name, _ in methods(0, 0)]
    p.add_argument("--methods", default=",".join(names), help=f"some of: {', '.join(names)}")
    p.add_argument("--out", default="runs/bench/closed_form.json")
    args = p.parse_args(argv)
    before = machine_note()
    results, refs = [], {}
    for alpha in [float(a) for a in args.alphas.split(",")]:
        values = base_job(args, alpha)
        refs[alpha] = references(values)
        print(f"alpha={alpha:g}: centralized references {refs[alpha]}", flush=True)
        chosen = args.methods.split(",")
        for name, extra in methods(args.rounds, args.init_rounds):
            if name not in chosen:
                continue
            run_dir = Path(tempfile.mkdtemp(prefix=f"cf-{alpha:g}-")) / "run"
            m = simulate({**values, **extra}, run_dir)
            row = summarize(alpha, name, m, refs[alpha]["probe"], values["num-clients"])
            results.append(row)
            print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
    print("\n" + markdown_table(results, COLUMNS))
    print("\ncentralized references (pooled training samples of the same clients):")
    for alpha, ref in refs.items():
        print(f"  alpha={alpha:g}: " + ", ".join(f"{k} {v:.4f}" for k, v in ref.items()))
    note = {"before": before, "after": machine_note()}
    write_json(Path(args.out), {"results": results, "references": refs, "machine": note})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
