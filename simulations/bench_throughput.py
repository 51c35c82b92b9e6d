"""Benchmark: client updates per second and peak memory of simulations with
100 and 1,000 clients (linear head on cached embeddings), on Flower's Ray
engine and on fedge's in-process backend, plus where the per-update time goes.

Each configuration samples 100 clients per round for training and 100 for
federated evaluation (``fraction-train = fraction-evaluate = 100 / clients``)
and runs as a fresh ``fedge simulate`` process. The embeddings must already
be in ``--cache-dir`` (the condition is "cached embeddings"; the first run
fills it, taking a while: one backbone pass over the samples in use).

    python -m simulations.bench_throughput --data-path /tmp/fedge-data/cifar10-jpg \\
        --cache-dir /tmp/fedge-cache-scale

Figures: ``updates/s`` = training replies / wall seconds of rounds 2..N
(round 1 also starts Ray's actors and opens client sessions; it is shown
apart), each round also evaluating as many clients and the global head;
``CPU s/round`` = CPU seconds the whole process tree used per round (what a
round costs, however busy the machine; ``updates/CPU-s`` is the throughput one
fully available core would give); ``wall`` = the whole process, start-up
included; memory = peak over the process tree (PSS: shared pages split; RSS:
summed, overstates).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from simulations.benchkit import (
    DEFAULT_WEIGHTS,
    launch_arm,
    machine_note,
    markdown_table,
    write_json,
)

COLUMNS = [
    "clients",
    "backend",
    "per round",
    "rounds",
    "wall s",
    "round 1 s",
    "s/round (2..N)",
    "updates/s",
    "CPU s/round",
    "updates/CPU-s",
    "peak PSS MB",
    "peak RSS MB",
    "processes",
    "final acc",
]


def job(args: argparse.Namespace, clients: int, backend: str, cpus: float) -> dict[str, Any]:
    fraction = min(1.0, args.per_round / clients)
    return {
        "dataset": "image-folder",
        "data-path": args.data_path,
        "weights": args.weights,
        "backbone": "mobilenet_v2",
        "image-size": args.image_size,
        "num-clients": clients,
        "num-rounds": args.rounds,
        "fraction-train": fraction,
        "fraction-evaluate": fraction,
        "min-clients": 2,
        "partitioner": "dirichlet",
        "dirichlet-alpha": 0.5,
        "max-test-samples": 1000,
        "seed": 1,
        "device": "cpu",
        "cache-dir": args.cache_dir,
        "simulation-backend": backend,
        "num-cpus": cpus,
    }


def measure(args: argparse.Namespace, clients: int, backend: str, cpus: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"tput-{clients}-{backend}-"))
    values = {**job(args, clients, backend, cpus), "run-dir": str(work / "run")}
    ran = launch_arm(values, work / "rounds.json")
    rows = ran.rows
    steady = rows[1:] or rows
    wall = steady[-1]["time"] - rows[0]["time"] if len(rows) > 1 else rows[0]["seconds"]
    cpu = steady[-1]["cpu_seconds"] - rows[0]["cpu_seconds"] if len(rows) > 1 else 0.0
    updates = sum(r["num_clients"] for r in steady)
    label = backend if backend == "inprocess" else f"ray (num-cpus={cpus:g})"
    return {
        "clients": clients,
        "backend": label,
        "per round": rows[0]["num_sampled"],
        "rounds": len(rows),
        "wall s": ran.wall_seconds,
        "round 1 s": rows[0]["seconds"],
        "s/round (2..N)": wall / len(steady),
        "updates/s": updates / wall,
        "CPU s/round": cpu / len(steady),
        "updates/CPU-s": updates / cpu if cpu else None,
        "peak PSS MB": ran.memory["peak_pss_mb"],
        "peak RSS MB": ran.memory["peak_rss_mb"],
        "processes": ran.memory["peak_processes"],
        "final acc": rows[-1]["accuracy"],
        "failures": sum(r["num_failures"] for r in rows),
        "run_dir": values["run-dir"],
    }


def breakdown(clients: list[int], per_round: int) -> list[dict[str, Any]]:
    """Per-update cost of each piece of Flower's Ray path (no-op ClientApp)."""
    from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fedge.config import FedgeConfig
    from simulations import overhead

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    content = RecordDict({"arrays": overhead.head_record(), "config": ConfigRecord({})})
    msg = Message(content, 5, MessageType.TRAIN)
    msg.metadata.__dict__["_message_id"] = "m-1"
    ctx = Context(
        run_id=7,
        node_id=5,
        node_config={"partition-id": 3, "num-partitions": max(clients)},
        state=RecordDict(),
        run_config=FedgeConfig().to_run_config(),
    )
    actor = overhead.ray_actor_ms(msg, ctx)
    serial = overhead.serialization_ms(msg, ctx, overhead.noop_client_app())
    out: dict[str, dict[str, float]] = {}
    for n in clients:
        state = overhead.linkstate_ms(n, per_round)
        out[f"{n}"] = {
            "ray_engine": overhead.engine_per_update("ray", n, per_round)["ms_per_update"],
            "inprocess": overhead.engine_per_update("inprocess", n, per_round)["ms_per_update"],
            "sweep": state["sweep_ms"],
            "sweep_total_s": state["sweep_total_s"],
            "store": state["push_ms"] + state["store_reply_ms"] + state["pull_ms"],
        }

    def row(part: str, how: str, **per_n: float) -> dict[str, Any]:
        return {"part": part, **{f"{n} clients": per_n[f"c{n}"] for n in clients}, "how": how}

    polling = 1000 * 0.2 / per_round
    return [
        row(
            "Ray engine, no-op ClientApp: total per update",
            f"{per_round} messages per round, rounds 2-5",
            **{f"c{n}": out[f"{n}"]["ray_engine"] for n in clients},
        ),
        row(
            "  Ray actor call (one at a time): submit, IPC, result",
            "Flower's ClientAppActor.run with a no-op app",
            **{f"c{n}": actor["latency_ms"] for n in clients},
        ),
        row(
            "    of which pickling message + Context + app, both ways",
            "cloudpickle dumps/loads",
            **{f"c{n}": serial for n in clients},
        ),
        row(
            "  LinkState delivery sweep (all nodes x waiting messages)",
            "one sweep / messages; repeats every 0.1 s while replies are due",
            **{f"c{n}": out[f"{n}"]["sweep"] for n in clients},
        ),
        row(
            "  LinkState push, store reply, pull",
            "InMemoryLinkState via InMemoryGrid",
            **{f"c{n}": out[f"{n}"]["store"] for n in clients},
        ),
        row(
            "  polling latency (0.1 s Grid pull + 0.1 s delivery wait)",
            f"per exchange, spread over {per_round} messages",
            **{f"c{n}": polling for n in clients},
        ),
        row(
            "In-process Grid, no-op ClientApp: total per update",
            "message copy + ClientApp call + reply",
            **{f"c{n}": out[f"{n}"]["inprocess"] for n in clients},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-path", default="/tmp/fedge-data/cifar10-jpg")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    p.add_argument("--cache-dir", default="/tmp/fedge-cache-scale")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--clients", default="100,1000")
    p.add_argument("--backends", default="ray,inprocess", help="empty: breakdown only")
    p.add_argument("--ray-num-cpus", default="1", help="num-cpus per client to try on Ray")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--per-round", type=int, default=100)
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--out", default="runs/bench/throughput.json")
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    before = machine_note()
    results = []
    for n in clients:
        for backend in [b for b in args.backends.split(",") if b]:
            cpus_list = (
                [float(c) for c in args.ray_num_cpus.split(",")] if backend == "ray" else [1]
            )
            for cpus in cpus_list:
                result = measure(args, n, backend, cpus)
                print(markdown_table([result], COLUMNS).splitlines()[-1], flush=True)
                results.append(result)
    if results:
        print("\n" + markdown_table(results, COLUMNS))
    parts: list[dict[str, Any]] = []
    if not args.no_breakdown:
        parts = breakdown(clients, args.per_round)
        cols = ["part", *[f"{n} clients" for n in clients], "how"]
        print("\nms per client update, by part (no-op ClientApp)\n")
        print(markdown_table(parts, cols))
    note = {"before": before, "after": machine_note()}
    print(f"\nmachine: {note}")
    write_json(Path(args.out), {"results": results, "breakdown": parts, "machine": note})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
