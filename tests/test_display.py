"""What `fedge simulate` shows while it runs: table rows, JSON lines, nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from fedge.cli.display import JsonDisplay, QuietDisplay, TextDisplay, make_display, table_header
from server.reporting import metrics_row, round_line
from server.rounds import RoundReport


def _report(rnd: int, accuracy: float) -> RoundReport:
    return RoundReport(
        round=rnd,
        num_sampled=10,
        num_clients=9,
        failures=[(4, "no reply within 60s")],
        bytes_up=9 * 51_496,
        bytes_down=20 * 51_496,
        seconds=0.42,
        train={"train-loss": 0.3},
        centralized={
            "accuracy": accuracy,
            "loss": 0.95,
            "macro_f1": 0.61,
            "per_class_recall": [0.5, 0.7],
            "confusion": [[5, 5], [3, 7]],
        },
    )


def _run(display, reports: list[RoundReport], num_rounds: int) -> None:
    with display.running(num_rounds):
        for report in reports:
            for cb in display.round_callbacks(num_rounds):
                cb.on_round_end(report, None)


def test_text_display_prints_a_header_then_one_aligned_row_per_round():
    out = io.StringIO()
    display = TextDisplay(Console(file=out, width=120, force_terminal=False))
    _run(display, [_report(1, 0.647), _report(2, 0.7)], 10)
    display.finished(
        Path("/runs/x"),
        {
            "final_accuracy": 0.7,
            "best_accuracy": 0.7,
            "best_round": 2,
            "rounds": 2,
            "wall_seconds": 31.0,
            "bytes_up_per_client_round": 51_496,
        },
    )
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0] == table_header()
    assert lines[1].split() == [
        "1/10",
        "9/10",
        "0.647",
        "0.950",
        "0.610",
        "463.5",
        "KB",
        "1.03",
        "MB",
        "0.4",
    ]
    assert lines[2].split()[:3] == ["2/10", "9/10", "0.700"]
    assert len({len(lines[0]), len(lines[1]), len(lines[2])}) == 1  # columns line up
    assert "final accuracy 0.700 (best 0.700 at round 2)" in lines[3]
    assert lines[4] == "run dir: /runs/x" and "fedge report /runs/x" in lines[5]


def test_json_display_writes_one_parseable_object_per_line():
    out = io.StringIO()
    display = JsonDisplay(out)
    display.print("client 0: 200 train samples")
    with display.progress("embedding pass", 5) as advance:
        advance(2)
        advance(3)
    _run(display, [_report(1, 0.6), _report(2, 0.65)], 2)
    display.finished(Path("/runs/x"), {"final_accuracy": 0.65})
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == [
        "log",
        "progress",
        "progress",
        "round",
        "round",
        "summary",
    ]
    assert events[2]["state"] == "end" and events[2]["done"] == 5
    assert events[3] == {"event": "round", "num_rounds": 2, **metrics_row(_report(1, 0.6))}
    assert events[5] == {"event": "summary", "run_dir": "/runs/x", "final_accuracy": 0.65}


def test_quiet_display_prints_only_the_run_directory(capsys):
    display = make_display(quiet=True)
    assert isinstance(display, QuietDisplay)
    display.print("client 0: 200 train samples")
    with display.progress("embedding pass", 5) as advance:
        advance(5)
    _run(display, [_report(1, 0.6)], 1)
    display.finished(Path("/runs/x"), {"final_accuracy": 0.6})
    assert capsys.readouterr().out == "/runs/x\n"


def test_rows_show_epsilon_when_the_round_reports_it():
    row = {**metrics_row(_report(3, 0.6)), "epsilon": 1.234}
    assert round_line(row, 5).endswith("| eps 1.23")
    from fedge.cli.display import table_row

    assert table_row(row, 5).split()[-1] == "1.23"
    assert table_header(with_epsilon=True).split()[-1] == "epsilon"
