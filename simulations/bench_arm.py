"""One measured federation in its own process, for the benchmark scripts.

``python -m simulations.bench_arm --kind fedge|baseline --values JSON --log PATH``
runs the federation the config values describe (``fedge``: fedge's own
simulation; ``baseline``: the plain Flower-style app of
:mod:`simulations.baseline_app`) and writes, after every round, the round's
wall-clock time, the CPU seconds used so far by this process tree (Ray's
processes included), accuracy and bytes to ``PATH`` (JSON)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fedge.config import FedgeConfig
from server.rounds import RoundReport, StopFederation
from simulations.proctree import tree_cpu_seconds


class RoundLog:
    """Round callback: time, CPU, accuracy and bytes of each round, as JSON;
    stops the federation once accuracy reaches ``stop_at``."""

    def __init__(self, path: Path, stop_at: float | None = None) -> None:
        self.path = path
        self.stop_at = stop_at
        self.rows: list[dict[str, Any]] = []

    def on_round_end(self, report: RoundReport, arrays: object) -> None:
        acc = (report.centralized or {}).get("accuracy")
        self.rows.append(
            {
                "round": report.round,
                "time": time.time(),
                "cpu_seconds": tree_cpu_seconds(),
                "seconds": report.seconds,
                "accuracy": acc,
                "bytes_up": report.bytes_up,
                "bytes_down": report.bytes_down,
                "num_clients": report.num_clients,
                "num_sampled": report.num_sampled,
                "num_failures": len(report.failures),
            }
        )
        self.path.write_text(json.dumps(self.rows))
        if self.stop_at is not None and acc is not None and acc >= self.stop_at:
            raise StopFederation(f"reached {acc:.3f} >= {self.stop_at}")


def run(kind: str, values: dict[str, Any], log: RoundLog) -> None:
    cfg = FedgeConfig.from_mapping(values)
    if kind == "baseline":
        from flwr.simulation import run_simulation as flwr_run_simulation

        from simulations.baseline_app import build_baseline_client_app, build_baseline_server_app
        from simulations.runner import absolute_paths, backend_config, quiet_simulation_logs

        cfg = absolute_paths(cfg)
        with quiet_simulation_logs():
            flwr_run_simulation(
                server_app=build_baseline_server_app(cfg, [log]),
                client_app=build_baseline_client_app(cfg),
                num_supernodes=cfg.num_clients,
                backend_config=backend_config(cfg),
            )
    else:
        from fedge.cli.display import QuietDisplay
        from simulations.runner import run_simulation

        run_simulation(cfg, display=QuietDisplay(), callbacks=[log])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kind", choices=("fedge", "baseline"), default="fedge")
    p.add_argument("--values", required=True, help="config keys and values, as JSON")
    p.add_argument("--log", required=True, type=Path)
    p.add_argument("--stop-at", type=float, default=None)
    args = p.parse_args(argv)
    run(args.kind, json.loads(args.values), RoundLog(args.log, args.stop_at))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
