"""What `fedge simulate` shows while it runs: a live display for people, JSON
lines for scripts, or nothing. Each mode is a set of hooks the simulation
calls: text lines, progress of long steps, and round callbacks (the ServerApp
runs in a thread of this process during a simulation, so they print here)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TextIO

from flwr.app import ArrayRecord

from server.reporting import human_bytes, metrics_row, round_cells
from server.rounds import RoundCallback, RoundReport

LOG_FORMATS = ("text", "json")
SUMMARY_KEYS = (
    "final_accuracy",
    "best_accuracy",
    "rounds",
    "wall_seconds",
    "bytes_up_per_client_round",
)
# Column name -> width of the live round table (right-aligned).
TABLE_COLUMNS = {
    "round": 7,
    "clients": 8,
    "accuracy": 9,
    "loss": 7,
    "macro-F1": 9,
    "bytes up": 10,
    "bytes down": 11,
    "seconds": 8,
}


def table_header(with_epsilon: bool = False) -> str:
    cols = dict(TABLE_COLUMNS, **({"epsilon": 8} if with_epsilon else {}))
    return "".join(f"{name:>{width}}" for name, width in cols.items())


def table_row(row: dict[str, Any], num_rounds: int) -> str:
    """One round as a row of the live table, aligned under :func:`table_header`."""
    cells = round_cells(row, num_rounds)
    cols = dict(TABLE_COLUMNS, **({"epsilon": 8} if "epsilon" in cells else {}))
    return "".join(f"{cells[name]:>{width}}" for name, width in cols.items())


def _summary_line(summary: dict[str, Any]) -> str:
    def num(key: str) -> str:
        value = summary.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    return (
        f"final accuracy {num('final_accuracy')} (best {num('best_accuracy')} at round "
        f"{summary.get('best_round')}) | {summary.get('rounds')} rounds | "
        f"{human_bytes(summary.get('bytes_up_per_client_round') or 0)} up per client round | "
        f"{summary.get('wall_seconds', 0):.0f}s"
    )


class TextDisplay:
    """Progress bars and a table that grows by one row per round (rich)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(highlight=False)
        self._progress: Any = None
        self._task: Any = None
        self._header_done = False

    def print(self, line: str) -> None:
        target = self._progress.console if self._progress is not None else self.console
        target.print(line, markup=False, highlight=False, soft_wrap=True)

    def _bar(self, transient: bool) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=transient,
        )

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar that stays on screen when done."""
        with self._bar(transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)

    @contextmanager
    def running(self, num_rounds: int) -> Iterator[None]:
        """A rounds progress bar under the table while the federation runs."""
        with self._bar(transient=True) as bar:
            self._progress = bar
            self._task = bar.add_task("rounds (starting workers)", total=num_rounds)
            try:
                yield
            finally:
                self._progress = None

    def round_callbacks(self, num_rounds: int) -> list[RoundCallback]:
        return [_Callback(lambda row: self._on_round(row, num_rounds))]

    def _on_round(self, row: dict[str, Any], num_rounds: int) -> None:
        if not self._header_done:
            self.print(table_header("epsilon" in round_cells(row, num_rounds)))
            self._header_done = True
        self.print(table_row(row, num_rounds))
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description="rounds")

    def finished(self, run_dir: Path, summary: dict[str, Any]) -> None:
        self.print(_summary_line(summary))
        self.print(f"run dir: {run_dir}")
        self.print(f"report:  fedge report {run_dir}")


class JsonDisplay:
    """One JSON object per line on stdout and nothing else there: `event` is
    `log`, `progress`, `round` (a metrics.jsonl row) or `summary`."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: str, **data: Any) -> None:
        line = json.dumps({"event": event, **data}, default=_jsonable)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def print(self, line: str) -> None:
        self.emit("log", message=line)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        start = time.perf_counter()
        self.emit("progress", task=description, state="start", total=total)
        done = [0]
        yield lambda n: done.__setitem__(0, done[0] + n)
        self.emit(
            "progress",
            task=description,
            state="end",
            total=total,
            done=done[0],
            seconds=time.perf_counter() - start,
        )

    def running(self, num_rounds: int) -> AbstractContextManager[None]:
        return nullcontext()

    def round_callbacks(self, num_rounds: int) -> list[RoundCallback]:
        return [_Callback(lambda row: self.emit("round", num_rounds=num_rounds, **row))]

    def finished(self, run_dir: Path, summary: dict[str, Any]) -> None:
        self.emit("summary", run_dir=str(run_dir), **summary)


class QuietDisplay:
    """Nothing while running; the run directory's path as the only output."""

    def print(self, line: str) -> None:
        pass

    def progress(self, description: str, total: int) -> AbstractContextManager[Any]:
        return nullcontext(lambda n: None)

    def running(self, num_rounds: int) -> AbstractContextManager[None]:
        return nullcontext()

    def round_callbacks(self, num_rounds: int) -> list[RoundCallback]:
        return []

    def finished(self, run_dir: Path, summary: dict[str, Any]) -> None:
        print(run_dir)


Display = TextDisplay | JsonDisplay | QuietDisplay


def make_display(log_format: str = "text", quiet: bool = False) -> Display:
    if quiet:
        return QuietDisplay()
    return JsonDisplay() if log_format == "json" else TextDisplay()


class _Callback:
    """A round callback that hands the round's metrics row to a function."""

    def __init__(self, on_row: Callable[[dict[str, Any]], None]) -> None:
        self.on_row = on_row

    def on_round_end(self, report: RoundReport, arrays: ArrayRecord) -> None:
        self.on_row(metrics_row(report))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
