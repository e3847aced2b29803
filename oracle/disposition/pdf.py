"""The disposition report as a PDF, drawn with matplotlib (Agg; imported only when a PDF is asked for, so
the API process does not load it at start-up).

Page 1 carries the title, the content SHA-256 and the temperature chart against the profile band with the
excursions shaded; the sections (:mod:`oracle.disposition.layout`) follow as text, over as many A4 pages as
they need. Fonts are embedded as TrueType (``pdf.fonttype`` 42) so the text can be extracted and searched.
The document's creation and modification dates are the record's time (the decision's recording), not the
clock's, so the same record and sign-offs always give the same pages.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from oracle.disposition.content import record_time
from oracle.disposition.layout import Section, sections, when
from oracle.disposition.signoffs import Signoff

if TYPE_CHECKING:
    from matplotlib.figure import Figure

A4 = (8.27, 11.69)
FONT_PT = 7.0
LINE_PT = 9.6
COLUMNS = 110  # monospace characters across the text width at FONT_PT
MARGIN_PT = 40.0
_CELL_CAP = 40


def _lines(sec: Section) -> list[tuple[str, str]]:
    """(style, text) lines of one section: style ``h`` (heading) or ``t`` (monospace body)."""
    out: list[tuple[str, str]] = [("h", sec.title)]
    for k, v in sec.pairs:
        for i, part in enumerate(
            textwrap.wrap(f"{k:<20} {v}", COLUMNS, subsequent_indent=" " * 21, break_long_words=True) or [k]
        ):
            out.append(("t", part if i == 0 or part.startswith(" ") else " " * 21 + part))
    if sec.rows:
        if sec.pairs:
            out.append(("t", ""))
        widths = [
            min(_CELL_CAP, max(len(h), *(len(r[i]) for r in sec.rows))) for i, h in enumerate(sec.headers)
        ]
        widths[-1] = max(len(sec.headers[-1]), COLUMNS - sum(w + 2 for w in widths[:-1]))

        def row(cells: list[str]) -> list[str]:
            wrapped = [
                textwrap.wrap(c, w, break_long_words=True) or [""] for c, w in zip(cells, widths, strict=True)
            ]
            return [
                "  ".join(
                    (col[j] if j < len(col) else "").ljust(w) for col, w in zip(wrapped, widths, strict=True)
                ).rstrip()
                for j in range(max(len(col) for col in wrapped))
            ]

        out += [("b", line) for line in row(sec.headers)]
        for r in sec.rows:
            out += [("t", line) for line in row(r)]
    if sec.note:
        out += [("t", line) for line in textwrap.wrap(sec.note, COLUMNS, break_long_words=True)]
    out.append(("t", ""))
    return out


def _chart(ax: Any, content: dict[str, Any]) -> None:
    import datetime as dt

    t, v, p = content["readings"]["t"], content["readings"]["temp_c"], content["profile"]
    hours = [(s - t[0]) / 3600 for s in t] if t else []
    ax.axhspan(
        p["band_low_c"],
        p["band_high_c"],
        color="#d9f2d9",
        label=f"band {p['band_low_c']:g}–{p['band_high_c']:g} °C",
    )
    for i, e in enumerate(content["excursions"]):
        ax.axvspan(
            (e["start_s"] - t[0]) / 3600,
            (e["end_s"] - t[0]) / 3600,
            color="#f4c7c3",
            alpha=0.7,
            label="excursion" if i == 0 else None,
        )
    ax.plot(hours, v, color="#1f4e9e", linewidth=1.0, label="temperature")
    ax.set_ylabel("°C")
    start = dt.datetime.fromtimestamp(t[0], dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if t else ""
    ax.set_xlabel(f"hours since {start}")
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(alpha=0.3)


def pages(content: dict[str, Any], signoffs: list[Signoff], sha256: str) -> Iterator[Figure]:
    """The report's A4 pages as matplotlib figures (the PDF's pages; also drawable as PNG to look at)."""
    from matplotlib.figure import Figure

    at = record_time(content)
    name = content["shipment"]["name"]
    lines: list[tuple[str, str]] = []
    for sec in sections(content, signoffs, sha256):
        lines += _lines(sec)
    height_pt = A4[1] * 72
    left = MARGIN_PT / (A4[0] * 72)
    page = 0
    while page == 0 or lines:
        page += 1
        fig = Figure(figsize=A4)
        y = height_pt - MARGIN_PT
        if page == 1:
            fig.text(left, y / height_pt, f"Disposition report: {name}", fontsize=15, weight="bold", va="top")
            y -= 22
            fig.text(
                left,
                y / height_pt,
                f"Verdict {content['decision']['verdict']} · content SHA-256 {sha256}",
                fontsize=7.5,
                family="monospace",
                va="top",
            )
            y -= 14
            ax = fig.add_axes((0.1, (y - 250) / height_pt, 0.84, 230 / height_pt))
            _chart(ax, content)
            y -= 285
        while lines and y > MARGIN_PT + LINE_PT:
            style, text = lines.pop(0)
            if style == "h":
                if y < MARGIN_PT + 5 * LINE_PT:  # a heading never ends a page
                    lines.insert(0, (style, text))
                    break
                y -= 4
                fig.text(left, y / height_pt, text, fontsize=10, weight="bold", va="top")
                y -= LINE_PT + 5
                continue
            fig.text(
                left,
                y / height_pt,
                text,
                fontsize=FONT_PT,
                family="monospace",
                weight="bold" if style == "b" else "normal",
                va="top",
            )
            y -= LINE_PT
        fig.text(
            0.5,
            20 / height_pt,
            f"{name} · record of {when(int(at.timestamp()))} · page {page} · content SHA-256 {sha256[:16]}…",
            fontsize=6.5,
            ha="center",
            color="#555",
        )
        yield fig


def render_pdf(content: dict[str, Any], signoffs: list[Signoff], sha256: str) -> bytes:
    """The report as PDF bytes; the same record and sign-offs give the same bytes."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_pdf import PdfPages

    at = record_time(content)
    metadata = {
        "Title": f"Disposition report {content['shipment']['name']}",
        "Subject": f"content SHA-256 {sha256}",
        "Creator": "oracle disposition",
        "CreationDate": at,
        "ModDate": at,
    }
    buf = io.BytesIO()
    with rc_context({"pdf.fonttype": 42}), PdfPages(buf, metadata=metadata) as pdf:
        for fig in pages(content, signoffs, sha256):
            pdf.savefig(fig)
    return buf.getvalue()


__all__ = ["pages", "render_pdf"]
