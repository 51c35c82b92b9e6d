"""Write a report document as ``<stem>.html`` (self-contained), ``<stem>.md``
and the PNG files the Markdown page shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedge.reports.document import Document
from fedge.reports.html import render_html
from fedge.reports.markdown import render_markdown


@dataclass(frozen=True)
class WrittenReport:
    html: Path
    markdown: Path
    images: list[Path]


def write_report(doc: Document, out_dir: Path, stem: str = "report") -> WrittenReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for img in doc.images():
        path = out_dir / img.filename
        path.write_bytes(img.png)
        images.append(path)
    html = out_dir / f"{stem}.html"
    html.write_text(render_html(doc), encoding="utf-8")
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render_markdown(doc), encoding="utf-8")
    return WrittenReport(html, markdown, images)
