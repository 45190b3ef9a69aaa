"""A model card (:class:`~mlpipe.registry.card.Card`) as Markdown and as one self-contained HTML page.

The HTML page loads nothing from elsewhere: styles are inline CSS, the plots are inlined as
``data:image/png;base64`` URIs and the only links are to the card's own sections and to the
MLflow UI. Every text of the card is escaped in both formats: names, reasons and categories come
from specs and data, none of which is trusted markup. The Markdown names each plot by its URI in the artifact
store instead of inlining it.
"""

from __future__ import annotations

import base64
import re
from html import escape

from mlpipe.registry.card import Card, Fact, Section, Table

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1100px;padding:1rem 1.5rem;color:#222;line-height:1.45}
h1{font-size:1.5rem;margin:.3rem 0}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.subtitle{color:#555;margin:0 0 1rem}nav a{margin-right:.8rem;font-size:.9rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0 1rem}caption{text-align:left;font-weight:600;
padding:.2rem 0}th,td{border-bottom:1px solid #e3e3e3;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}table.facts th{background:none;white-space:nowrap}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1rem}
figure{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:.4rem}img{max-width:100%;height:auto}
figcaption{font-size:.85rem;color:#444}
"""
# Markdown's special characters; ``_`` only where it could start or end emphasis (not inside a word: int_rate)
MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|#&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


# --- Markdown ---------------------------------------------------------------------------------

def md(text: str) -> str:
    """``text`` on one line, its Markdown characters escaped (it reads as the same text, never as markup)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_destination(url: str) -> str:
    """``url`` as a Markdown link destination that cannot end early (``<``, ``>`` and spaces percent-encoded)."""
    return "<" + url.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20") + ">"


def md_link(text: str, url: str) -> str:
    return f"[{md(text)}]({md_destination(url)})"


def md_fact(fact: Fact) -> str:
    return f"- **{md(fact.label)}:** {md_link(fact.text, fact.link) if fact.link else md(fact.text)}"


def md_table(table: Table) -> list[str]:
    return [f"**{md(table.caption)}**", "", "| " + " | ".join(md(cell) for cell in table.header) + " |",
            "|" + "---|" * len(table.header),
            *("| " + " | ".join(md(cell) for cell in row) + " |" for row in table.rows), ""]


def md_section(section: Section) -> list[str]:
    lines = [f"## {md(section.title)}", ""]
    if section.facts:
        lines += [*map(md_fact, section.facts), ""]
    if section.items:
        lines += [*(f"- {md(item)}" for item in section.items), ""]
    for table in section.tables:
        lines += md_table(table)
    for figure in section.figures:
        lines += [f"![{md(figure.caption)}]({md_destination(figure.uri)})", ""]
    return lines


def markdown(card: Card) -> str:
    """The card as a Markdown document."""
    lines = [f"# {md(card.title)}", "", md(card.subtitle), ""]
    for section in card.sections:
        lines += md_section(section)
    return "\n".join(lines).rstrip() + "\n"


# --- HTML -------------------------------------------------------------------------------------

def _e(text: str) -> str:
    """``text`` escaped for HTML text and attributes."""
    return escape(str(text), quote=True)


def html_fact(fact: Fact) -> str:
    text = f'<a href="{_e(fact.link)}">{_e(fact.text)}</a>' if fact.link else _e(fact.text)
    return f"<tr><th>{_e(fact.label)}</th><td>{text}</td></tr>"


def html_table(table: Table) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<table><caption>{_e(table.caption)}</caption><tr>{head}</tr>{body}</table>"


def html_section(section: Section) -> str:
    parts = [f'<section id="{_e(section.key)}"><h2>{_e(section.title)}</h2>']
    if section.facts:
        parts.append('<table class="facts">' + "".join(map(html_fact, section.facts)) + "</table>")
    if section.items:
        parts.append("<ul>" + "".join(f"<li>{_e(item)}</li>" for item in section.items) + "</ul>")
    parts += map(html_table, section.tables)
    if section.figures:
        parts.append('<div class="plots">' + "".join(
            f'<figure><img alt="{_e(figure.caption)}" src="data:image/png;base64,'
            f'{base64.b64encode(figure.png).decode("ascii")}"><figcaption>{_e(figure.caption)}</figcaption></figure>'
            for figure in section.figures) + "</div>")
    return "".join(parts) + "</section>"


def html(card: Card) -> str:
    """The card as one self-contained HTML page (see the module docstring)."""
    toc = " ".join(f'<a href="#{_e(section.key)}">{_e(section.title)}</a>' for section in card.sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(card.title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{_e(card.title)}</h1>"
            f'<p class="subtitle">{_e(card.subtitle)}</p><nav>{toc}</nav></header>'
            + "\n".join(map(html_section, card.sections)) + "\n</body></html>\n")
