"""Memory and CPU time of a process and all its descendants (Ray's GCS,
raylet and workers included), read from Linux's /proc.

Memory, sampled while the tree runs, summed over its processes: RSS (resident
pages; pages shared between processes, such as memory-mapped embedding shards
and libraries, count once per process, so the sum overstates) and PSS (each
shared page divided among the processes that map it: the honest total).

CPU seconds (user + system) of the tree tell what a run costs independently
of how busy the machine is: on a shared machine, wall time measures the load.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        out[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rollup_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, or zeros once it is gone."""
    rss = pss = 0
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    for line in text.splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    """User + system time of ``pid`` and of its children it has waited for."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds used so far by ``root`` (default: this process) and its
    live descendants (and the descendants they have reaped)."""
    return sum(_cpu_ticks(p) for p in process_tree(root or os.getpid())) / _TICKS


@dataclass
class TreeMemory:
    rss_bytes: int
    pss_bytes: int
    processes: int


def tree_memory(root: int) -> TreeMemory:
    pids = process_tree(root)
    sizes = [_rollup_kib(p) for p in pids]
    return TreeMemory(1024 * sum(r for r, _ in sizes), 1024 * sum(p for _, p in sizes), len(pids))


class PeakMemory:
    """Samples ``tree_memory(root)`` in a thread; keeps the peaks.

    Use as a context manager around the work (``root`` defaults to this process).
    """

    def __init__(self, root: int | None = None, interval: float = 0.25) -> None:
        self.root = root if root is not None else os.getpid()
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        m = tree_memory(self.root)
        self.peak_rss = max(self.peak_rss, m.rss_bytes)
        self.peak_pss = max(self.peak_pss, m.pss_bytes)
        self.peak_processes = max(self.peak_processes, m.processes)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def to_json(self) -> dict[str, float]:
        return {
            "peak_rss_mb": self.peak_rss / 2**20,
            "peak_pss_mb": self.peak_pss / 2**20,
            "peak_processes": self.peak_processes,
        }
