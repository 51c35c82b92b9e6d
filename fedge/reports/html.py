"""A report as one self-contained HTML page: inline CSS, images as data URIs,
no scripts and no network resources."""

from __future__ import annotations

import base64
from html import escape

from fedge.reports.document import Block, Document, Image, Paragraph, Table

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
p.lead { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child, table.text td, table.text th { text-align: left; }
caption { caption-side: bottom; text-align: left; color: #666; font-size: 0.9em;
          padding-top: 0.3em; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
"""


def _table(t: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in t.rows
    )
    caption = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    kind = "" if t.numeric else ' class="text"'
    return (
        f'<table id="{escape(t.key)}"{kind}>{caption}\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody></table>"
    )


def _image(img: Image) -> str:
    data = base64.b64encode(img.png).decode("ascii")
    return (
        f'<img id="{escape(img.name)}" alt="{escape(img.alt)}" src="data:image/png;base64,{data}">'
    )


def _block(b: Block) -> str:
    if isinstance(b, Paragraph):
        return f"<p>{escape(b.text)}</p>"
    if isinstance(b, Table):
        return _table(b)
    return _image(b)


def render_html(doc: Document) -> str:
    nav = " ".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in doc.sections)
    sections = "\n".join(
        f'<section id="{escape(s.key)}">\n<h2>{escape(s.title)}</h2>\n'
        + "\n".join(_block(b) for b in s.blocks)
        + "\n</section>"
        for s in doc.sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(doc.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{escape(doc.title)}</h1>\n<p class="lead">{escape(doc.lead)}</p>\n'
        f"<nav>{nav}</nav>\n{sections}\n</body>\n</html>\n"
    )
