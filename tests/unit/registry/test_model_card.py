"""The model card's renderers and its monitoring section, on cards made here: text is escaped in both formats, the
HTML is self-contained, numbers are written one way."""

from __future__ import annotations

import base64
import re

from mlpipe.registry.card import Card, Fact, Figure, Section, Table, number, share
from mlpipe.registry.card_render import html, markdown, md
from mlpipe.registry.card_sections import monitored

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
HOSTILE = '<script>alert("x")</script> & a | b *c* [d](javascript:e) _f_ `g` # h'


def card(text: str = HOSTILE) -> Card:
    return Card(f"Model card: {text}", text, [
        Section("one", "First", [Fact("Plain", text), Fact("Linked", "the run", 'https://mlflow/#/runs/1"><b>')],
                [text], [Table(text, ("name", "value"), [(text, "1"), ("int_rate", "0.5000")])],
                [Figure(text, "file:///store/run/analyze/plots/roc.png", PNG)]),
        Section("two", "Second", items=["only an item"])])


def test_html_escapes_every_text_and_inlines_the_plots():
    page = html(card())
    assert "<script>" not in page and "javascript:e)" in page  # text, never markup or a link
    assert page.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; a | b") >= 5
    assert 'href="https://mlflow/#/runs/1&quot;&gt;&lt;b&gt;"' in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert re.findall(r'href="([^"]*)"', page) == ["#one", "#two", "https://mlflow/#/runs/1&quot;&gt;&lt;b&gt;"]
    assert not re.search(r"<(script|link|iframe|object)\b", page)


def test_markdown_escapes_every_text_and_keeps_table_columns():
    text = markdown(card())
    assert "<script>" not in text and "\\<script\\>" in text
    assert md("a | b *c* [d](e) _f_ `g` # h & i") == "a \\| b \\*c\\* \\[d\\](e) \\_f\\_ \\`g\\` \\# h \\& i"
    assert md("int_rate   on\ntwo lines") == "int_rate on two lines"  # inside a word, _ is no emphasis
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 3 for line in rows)  # 2 columns: no escaped | splits one
    assert "- **Linked:** [the run](<https://mlflow/#/runs/1\"%3E%3Cb%3E>)" in text
    assert "![" in text and "(<file:///store/run/analyze/plots/roc.png>)" in text
    assert text.index("## First") < text.index("## Second")


def test_numbers_and_shares_are_written_one_way():
    assert [number(1234), number(0.123456), number(0.123456, 6), number(None), number(True), number("x")] == \
        ["1,234", "0.1235", "0.123456", "—", "True", "x"]
    assert (share(0.052449), share(None)) == ("5.24%", "—")


REPORT = {"status": "breach", "message": "int_rate drifts", "reasons": ["int_rate: psi 0.31 >= 0.25",
                                                                          "quality: roc_auc 0.61 < 0.65"],
          "window": {"start": "2026-12-01T00:00:00+00:00", "end": "2026-12-08T00:00:00+00:00"},
          "rows": {"total": 3000, "batch": 2500, "served": 500}, "drifting_features": ["int_rate"],
          "quality": {"status": "breach", "labels": 800, "overall": {"roc_auc": 0.61, "pr_auc": 0.12, "rows": 800}},
          "report_html": "file:///store/m/monitoring/r/monitor/report.html",
          "monitoring_run": "file:///store/m/monitoring/r", "generated_at": "2026-12-08T00:00:01+00:00"}


def test_the_monitoring_section_says_the_latest_drift_and_quality():
    facts = {fact.label: fact.text for fact in monitored(REPORT).facts}
    assert facts["Status"] == "breach: int_rate drifts"
    assert facts["Rows"] == "total 3,000, batch 2,500, served 500"
    assert facts["Drifting features"] == "int_rate"
    assert facts["Quality"] == "breach on 800 labelled rows: roc_auc 0.6100, pr_auc 0.1200"
    assert facts["Window"] == "2026-12-01T00:00:00+00:00 to 2026-12-08T00:00:00+00:00"
    assert monitored(REPORT).items == ["breach: int_rate: psi 0.31 >= 0.25", "breach: quality: roc_auc 0.61 < 0.65"]
    quiet = {fact.label: fact.text for fact in monitored({**REPORT, "quality": None, "drifting_features": []}).facts}
    assert quiet["Quality"].startswith("no outcomes joined") and quiet["Drifting features"] == "none"
    assert monitored(None).items[0].startswith("not monitored yet")
