"""A report as Markdown, with its PNGs as files beside it."""

from __future__ import annotations

from fedge.reports.document import Block, Document, Image, Paragraph, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _align(column: int, numeric: bool) -> str:
    return "---:" if numeric and column > 0 else "---"


def _table(t: Table) -> str:
    lines = [
        "| " + " | ".join(_cell(h) for h in t.headers) + " |",
        "| " + " | ".join(_align(i, t.numeric) for i in range(len(t.headers))) + " |",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows),
    ]
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return "\n".join(lines)


def _block(b: Block) -> str:
    if isinstance(b, Paragraph):
        return b.text
    if isinstance(b, Table):
        return _table(b)
    return _image(b)


def _image(img: Image) -> str:
    return f"![{img.alt}]({img.filename})"


def render_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}", doc.lead]
    for s in doc.sections:
        parts.append(f"## {s.title}")
        parts.extend(_block(b) for b in s.blocks)
    return "\n\n".join(parts) + "\n"
