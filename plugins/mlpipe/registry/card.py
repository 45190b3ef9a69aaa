"""A model card as data: titled sections of facts, bullet items, tables and figures, all plain text.

:mod:`mlpipe.registry.card_sections` fills one from a model version's lineage and
:mod:`mlpipe.registry.card_render` writes it as Markdown and as self-contained HTML; nothing here knows
either format, so the two documents always say the same. Text is never markup: the renderers escape it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NONE = "—"  # a figure that is not known


@dataclass(frozen=True)
class Fact:
    """One labelled fact; ``link``, a URL its text points to."""

    label: str
    text: str
    link: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of text cells under ``header``, with a ``caption`` above it."""

    caption: str
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Figure:
    """A PNG plot: its ``caption``, where it is stored (``uri``) and its bytes (inlined in the HTML)."""

    caption: str
    uri: str
    png: bytes


@dataclass(frozen=True)
class Section:
    """A titled part of the card; ``key`` is its anchor."""

    key: str
    title: str
    facts: list[Fact] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Card:
    """The card of one model version: its title, a line under it, and its sections in order."""

    title: str
    subtitle: str
    sections: list[Section]

    def section(self, key: str) -> Section:
        """The section whose anchor is ``key``."""
        return next(section for section in self.sections if section.key == key)


def number(value: float | int | None, digits: int = 4) -> str:
    """A figure as the card writes it: whole numbers with thousands separators, others with ``digits`` decimals;
    :data:`NONE` when it is missing."""
    if value is None:
        return NONE
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def share(value: float | None) -> str:
    """A fraction as a percentage with two decimals."""
    return NONE if value is None else f"{value:.2%}"
