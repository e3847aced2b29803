"""The disposition report as one self-contained HTML page: inline CSS and an inline SVG chart, nothing
loaded from anywhere, every value escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from oracle.disposition.layout import Section, sections, when
from oracle.disposition.signoffs import Signoff

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;width:100%} td,th{padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3} tr+tr td{border-top:1px solid #eee} td.k{width:12em;color:#555}
.mono,td{font-variant-numeric:tabular-nums} .v{word-break:break-all} .note{color:#555}
.verdict{font-size:1.2em;font-weight:bold} svg{width:100%;height:auto;border:1px solid #ddd}
"""

W, H, PAD = 900, 300, 42


def chart_svg(content: dict[str, Any]) -> str:
    """Temperature against the profile band; excursion spans shaded red."""
    t, v = content["readings"]["t"], content["readings"]["temp_c"]
    p = content["profile"]
    if not t:
        return "<p class='note'>No readings.</p>"
    lo = float(min(min(v), p["band_low_c"])) - 1.0
    hi = float(max(max(v), p["band_high_c"])) + 1.0
    t0, t1 = float(t[0]), float(max(t[-1], t[0] + 1))

    def x(s: float) -> float:
        return PAD + (s - t0) / (t1 - t0) * (W - 2 * PAD)

    def y(c: float) -> float:
        return H - PAD - (c - lo) / (hi - lo) * (H - 2 * PAD)

    parts = [f"<svg viewBox='0 0 {W} {H}' role='img' aria-label='temperature against the profile band'>"]
    parts.append(
        f"<rect x='{PAD}' y='{y(p['band_high_c']):.1f}' width='{W - 2 * PAD}' "
        f"height='{y(p['band_low_c']) - y(p['band_high_c']):.1f}' fill='#d9f2d9'/>"
    )
    for e in content["excursions"]:
        x0, x1 = x(e["start_s"]), x(min(e["end_s"], t1))
        parts.append(
            f"<rect x='{x0:.1f}' y='{PAD}' width='{max(x1 - x0, 1):.1f}' height='{H - 2 * PAD}' "
            "fill='#f4c7c3' opacity='.6'/>"
        )
    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, v, strict=True))
    parts.append(f"<polyline points='{points}' fill='none' stroke='#1f4e9e' stroke-width='1.5'/>")
    for c in (p["band_low_c"], p["band_high_c"]):
        parts.append(f"<text x='4' y='{y(c) + 4:.1f}' font-size='11'>{c:g} °C</text>")
    parts.append(f"<text x='{PAD}' y='{H - 12}' font-size='11'>{escape(_hhmm(t0))}</text>")
    parts.append(
        f"<text x='{W - PAD}' y='{H - 12}' font-size='11' text-anchor='end'>{escape(_hhmm(t1))}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def _hhmm(s: float) -> str:
    return when(int(s))


def _section(sec: Section) -> str:
    out = [f"<section><h2>{escape(sec.title)}</h2>"]
    if sec.pairs:
        out.append("<table>")
        for k, v in sec.pairs:
            cls = "verdict" if k == "Verdict" else "v"
            out.append(f"<tr><td class='k'>{escape(k)}</td><td class='{cls}'>{escape(v)}</td></tr>")
        out.append("</table>")
    if sec.rows:
        out.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in sec.headers) + "</tr>")
        for row in sec.rows:
            out.append("<tr>" + "".join(f"<td class='v'>{escape(c)}</td>" for c in row) + "</tr>")
        out.append("</table>")
    if sec.note:
        out.append(f"<p class='note'>{escape(sec.note)}</p>")
    out.append("</section>")
    return "".join(out)


def render_html(content: dict[str, Any], signoffs: list[Signoff], sha256: str) -> str:
    """The report page (UTF-8 text)."""
    name = escape(content["shipment"]["name"])
    body = "".join(_section(s) for s in sections(content, signoffs, sha256))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Disposition report {name}</title><style>{_CSS}</style></head><body>"
        f"<h1>Disposition report: {name}</h1>"
        f"<p class='note'>Content SHA-256 <span class='mono'>{escape(sha256)}</span></p>"
        f"<h2>Temperature against the profile band</h2>{chart_svg(content)}"
        f"{body}</body></html>"
    )


__all__ = ["chart_svg", "render_html"]
