"""`fedge report` and `fedge compare`: the pages state what the run directory holds."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from fedge import rundir
from fedge.cli.main import main
from fedge.reports.content import fmt
from tests.run_dirs import CLASSES, EXPORT_ROWS, write_run_dir


class _Page(HTMLParser):
    """Tables (by id, as lists of cell texts) and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: dict[str, str] = {}
        self.urls: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "table":
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images[a["id"]] = a["src"]

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse_html(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def markdown_table(text: str, first_header: str, second_header: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table whose header starts so."""
    lines = text.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if re.match(rf"\| {re.escape(first_header)} \| {re.escape(second_header)} \|", line)
    )
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return [rows[0], *rows[2:]]  # skip the alignment row


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    return write_run_dir(tmp_path / "run-a", rounds=4, epsilon=True, export=True)


def _report(run: Path, *extra: str) -> Path:
    assert main(["report", str(run), *extra]) == 0
    return run / "report"


def test_report_rounds_table_states_metrics_jsonl(full_run: Path):
    out = _report(full_run)
    metrics = rundir.read_metrics(full_run)
    html_rows = parse_html(out / "report.html").tables["rounds"]
    md_rows = markdown_table((out / "report.md").read_text(), "round", "accuracy")
    for rows in (html_rows, md_rows):
        header, body = rows[0], rows[1:]
        col = {name: i for i, name in enumerate(header)}
        assert [int(r[col["round"]]) for r in body] == [m["round"] for m in metrics]
        for row, m in zip(body, metrics, strict=True):
            assert _number(row[col["accuracy"]]) == pytest.approx(m["accuracy"], abs=5e-5)
            assert _number(row[col["loss"]]) == pytest.approx(m["loss"], abs=5e-5)
            fed = _number(row[col["fed. accuracy"]])
            assert fed == pytest.approx(m["federated_accuracy"], abs=5e-5)
            assert _number(row[col["bytes up"]]) == m["bytes_up"]
            assert _number(row[col["bytes down"]]) == m["bytes_down"]
            assert row[col["clients"]] == f"{m['num_clients']}/{m['num_sampled']}"
            assert _number(row[col["epsilon"]]) == pytest.approx(m["epsilon"], abs=5e-4)


def test_report_summary_and_per_class_figures_match_the_run(full_run: Path):
    out = _report(full_run)
    page = parse_html(out / "report.html")
    summary = rundir.read_summary(full_run)
    figures = dict(page.tables["summary"][1:])
    assert figures["final accuracy"] == fmt(summary["final_accuracy"])
    assert figures["best accuracy"].startswith(fmt(summary["best_accuracy"]))
    assert figures["privacy spent (epsilon)"] == fmt(summary["epsilon"], 3)
    assert str(round(summary["bytes_up_per_client_round"])) in figures[
        "bytes up per client round"
    ].replace(",", "")

    last = rundir.read_metrics(full_run)[-1]
    per_class = page.tables["per-class"]
    assert [r[0] for r in per_class[1:]] == CLASSES
    for i, row in enumerate(per_class[1:]):
        assert _number(row[1]) == pytest.approx(last["per_class_recall"][i], abs=5e-5)
        assert _number(row[2]) == sum(last["confusion"][i])  # samples of the class
        assert _number(row[3]) == sum(r[i] for r in last["confusion"])  # predicted as it


def test_report_shows_the_export_table_when_an_export_exists(full_run: Path):
    out = _report(full_run)
    export = parse_html(out / "report.html").tables["export"]
    header = export[0]
    assert header[:4] == ["artifact", "format", "precision", "size_bytes"]
    assert [r[0] for r in export[1:]] == [r["artifact"] for r in EXPORT_ROWS]
    int8 = dict(zip(header, export[2], strict=True))
    assert _number(int8["size_bytes"]) == EXPORT_ROWS[1]["size_bytes"]
    assert _number(int8["top1_agreement"]) == EXPORT_ROWS[1]["top1_agreement"]
    assert "| model-int8.tflite | tflite | int8 |" in (out / "report.md").read_text()


def test_html_is_self_contained_with_every_plot_embedded(full_run: Path):
    out = _report(full_run)
    page = parse_html(out / "report.html")
    expected = {
        "accuracy_loss",
        "label_distribution",
        "per_class_recall",
        "confusion_matrix",
        "bytes_per_round",
        "epsilon",
    }
    assert set(page.images) == expected
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), page.urls
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    for name, src in page.images.items():
        png = base64.b64decode(src.split(",", 1)[1])
        assert png == (out / f"{name}.png").read_bytes()  # Markdown's files: same plots
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG" and min(img.size) > 200
    md = (out / "report.md").read_text()
    assert all(f"]({name}.png)" in md for name in expected)


def test_sections_follow_what_the_run_has(tmp_path: Path):
    run = write_run_dir(tmp_path / "plain", rounds=2, partitions=False)
    out = _report(run)
    page = parse_html(out / "report.html")
    assert "epsilon" not in page.images and "export" not in page.tables
    assert "epsilon" not in page.tables["rounds"][0]
    assert "label_distribution" not in page.images
    assert "No partitions.json" in (out / "report.md").read_text()


def test_report_out_option_and_cli_output(full_run: Path, tmp_path: Path, capsys):
    out = tmp_path / "elsewhere"
    assert main(["report", str(full_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed and str(out / "report.md") in printed
    assert (out / "report.html").is_file() and not (full_run / "report").exists()


def test_report_of_a_folder_that_is_no_run_names_the_fix(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json is missing" in capsys.readouterr().err


def test_compare_plots_and_tabulates_each_run(tmp_path: Path, capsys):
    a = write_run_dir(tmp_path / "fedavg", rounds=4)
    b = write_run_dir(tmp_path / "fedprox", rounds=3, strategy="fedprox", seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert "fedprox" in capsys.readouterr().out
    page = parse_html(out / "compare.html")
    assert set(page.images) == {"compare_accuracy"}
    header, *rows = page.tables["runs"]
    col = {name: i for i, name in enumerate(header)}
    for row, run in zip(rows, (a, b), strict=True):
        summary = rundir.read_summary(run)
        assert row[col["run"]] == run.name
        assert row[col["strategy"]] == summary["strategy"]
        assert int(row[col["rounds"]]) == summary["rounds"] == len(rundir.read_metrics(run))
        assert row[col["final accuracy"]] == fmt(summary["final_accuracy"])
        assert row[col["best accuracy"]] == fmt(summary["best_accuracy"])
        per_client = _number(row[col["bytes up per client round"]])
        assert per_client == round(summary["bytes_up_per_client_round"])
    assert (out / "compare_accuracy.png").is_file()
    assert "| fedprox | fedprox | 3 |" in (out / "compare.md").read_text()


def test_compare_names_runs_apart_when_folders_share_a_name(tmp_path: Path):
    a = write_run_dir(tmp_path / "x" / "run", rounds=2)
    b = write_run_dir(tmp_path / "y" / "run", rounds=2, seed=1)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    rows = parse_html(tmp_path / "cmp" / "compare.html").tables["runs"][1:]
    assert [r[0] for r in rows] == ["x/run", "y/run"]


def test_summary_records_the_final_confusion_matrix(full_run: Path):
    summary = json.loads((full_run / "summary.json").read_text())
    last = rundir.read_metrics(full_run)[-1]
    assert summary["final_confusion"] == last["confusion"]
    assert summary["classes"] == CLASSES
