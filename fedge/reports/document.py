"""A report as plain data (sections of text, tables and images), which the
HTML and Markdown renderers turn into pages with the same content."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    """``key`` names the table (its HTML id). ``numeric``: columns after the
    first are right-aligned figures (else everything is left-aligned text)."""

    key: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: bool = True


@dataclass(frozen=True)
class Image:
    """A PNG; ``name`` is its file stem beside the Markdown page."""

    name: str
    png: bytes
    alt: str

    @property
    def filename(self) -> str:
        return f"{self.name}.png"


Block = Paragraph | Table | Image


@dataclass
class Section:
    title: str
    key: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    lead: str
    sections: list[Section] = field(default_factory=list)

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]

    def table(self, key: str) -> Table:
        for s in self.sections:
            for b in s.blocks:
                if isinstance(b, Table) and b.key == key:
                    return b
        raise KeyError(key)
