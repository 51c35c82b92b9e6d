"""Benchmark: accuracy versus epsilon on the acceptance job, next to the non-private run.

Central DP (client-level epsilon of the released model; clients clip their
update to 1.0, the server adds noise) and local DP (example-level epsilon of
each client's data; DP-SGD with per-sample gradients clipped to 1.0), each at a
few noise multipliers, and central DP once with secure aggregation on.

    python -m simulations.bench_privacy --set data-path=... weights=...

Prints a Markdown table and writes result.json (with every round's epsilon).
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


def _central(z: float, **extra: Any) -> dict[str, Any]:
    return {"dp": "central", "dp-noise-multiplier": z, "dp-clipping-norm": 1.0, **extra}


def _local(z: float) -> dict[str, Any]:
    return {"dp": "local", "dp-noise-multiplier": z, "dp-clipping-norm": 1.0}


SETTINGS: dict[str, dict[str, Any]] = {
    "non-private": {},
    "central-z0.3": _central(0.3),
    "central-z1": _central(1.0),
    "central-z2": _central(2.0),
    "central-z1-secagg": _central(1.0, **{"secure-aggregation": "true"}),
    "local-z1": _local(1.0),
    "local-z2": _local(2.0),
    "local-z4": _local(4.0),
}
PROTECTS = {
    "none": "nothing",
    "central": "each client's whole dataset (client-level), in the released heads",
    "local": "each example of a client's data (example-level), in what it sends",
}


def table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        s, v = run["summary"], run["values"]
        dp = v.get("dp", "none")
        eps = s.get("epsilon")
        rows.append(
            [
                run["name"],
                dp + (" + SecAgg+" if v.get("secure-aggregation") == "true" else ""),
                v.get("dp-noise-multiplier", "-"),
                v.get("dp-clipping-norm", "-"),
                "inf" if dp == "none" else f"{eps:.2f}",
                PROTECTS[dp],
                f"{s['final_accuracy']:.3f}",
                s["rounds"],
            ]
        )
    headers = [
        "setting",
        "dp",
        "noise multiplier",
        "clipping norm",
        "epsilon (delta 1e-5)",
        "epsilon bounds what the server or model reveals about",
        "final accuracy",
        "rounds",
    ]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], "runs/bench-privacy")
    parser.add_argument("--only", nargs="+", choices=SETTINGS, help="run only these settings")
    args = parser.parse_args(argv)
    overrides = overrides_of(args)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or list(SETTINGS)
    runs = [simulate(n, {**ACCEPTANCE_JOB, **overrides, **SETTINGS[n]}, out) for n in names]
    result = {
        "job": {**ACCEPTANCE_JOB, **overrides},
        "runs": [
            {
                "name": r["name"],
                "settings": SETTINGS[r["name"]],
                "final_accuracy": r["summary"]["final_accuracy"],
                "epsilon": r["summary"].get("epsilon"),
                "epsilon_per_round": [row.get("epsilon") for row in r["rows"]],
                "dp_accounting": r["summary"].get("dp_accounting"),
                "rounds": r["summary"]["rounds"],
                "wall_seconds": r["summary"]["wall_seconds"],
            }
            for r in runs
        ],
    }
    print(table(runs))
    print(f"\n(results: {write_result(out, result)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
