"""Benchmark: 2 of 10 clients attack; final accuracy of fedavg and the robust strategies.

The acceptance job with ``malicious-fraction=0.2`` (partitions 0 and 1 attack
every round, ``attack-scale=10``), for each strategy, next to the same
strategy without attackers. Krum assumes 2 attackers; Bulyan needs
``4f+3 <= 10`` clients, so it assumes f=1; trimmed mean cuts 20 % at each end.

    python -m simulations.bench_robustness --set data-path=... weights=...
    python -m simulations.bench_robustness --attacks sign-flip scale noise label-flip

Prints a Markdown table (strategies x attacks) and writes result.json.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from simulations.bench_embedding_cache import ACCEPTANCE_JOB
from simulations.bench_runs import (
    make_parser,
    markdown_table,
    overrides_of,
    simulate,
    write_result,
)

STRATEGIES: dict[str, dict[str, Any]] = {
    "fedavg": {},
    "fedmedian": {},
    "fedtrimmedavg": {"trim-beta": 0.2},
    "krum": {"krum-malicious": 2},
    "bulyan": {"krum-malicious": 1},
}
ATTACKS = ("sign-flip", "scale", "noise", "label-flip")


def settings(strategy: str, attack: str) -> dict[str, Any]:
    values = {"strategy": strategy, **STRATEGIES[strategy]}
    if attack != "clean":
        values.update({"malicious-fraction": 0.2, "attack": attack, "attack-scale": 10.0})
    return values


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], "runs/bench-robustness")
    parser.add_argument("--attacks", nargs="+", default=["sign-flip", "scale"], choices=ATTACKS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    args = parser.parse_args(argv)
    overrides = overrides_of(args)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    columns = ["clean", *args.attacks]
    accuracy: dict[str, dict[str, float]] = {}
    runs = []
    for strategy in args.strategies:
        for attack in columns:
            values = {**ACCEPTANCE_JOB, **overrides, **settings(strategy, attack)}
            run = simulate(f"{strategy}-{attack}", values, out)
            accuracy.setdefault(strategy, {})[attack] = run["summary"]["final_accuracy"]
            runs.append({"strategy": strategy, "attack": attack, **run["summary"]})
    rows = [[name, *(f"{accuracy[name][c]:.3f}" for c in columns)] for name in args.strategies]
    print(markdown_table(["strategy", *columns], rows))
    result = {"job": {**ACCEPTANCE_JOB, **overrides}, "final_accuracy": accuracy, "runs": runs}
    print(f"\n(results: {write_result(out, result)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
