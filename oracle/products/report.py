"""The backtest report: a PNG chart (matplotlib, Agg backend, no display needed) and an HTML page.

The chart has two panels: each window's deciding index value per season with its trigger and exit,
and the season payouts as bars (in token units). The HTML page shows the figures table, the worst
seasons and the chart (referenced by file name, so the two files travel together).
"""

from __future__ import annotations

import html
from pathlib import Path

from oracle.products.backtest import BacktestFigures
from oracle.products.evaluate import Run

#: The pool's token (``oracle.dashboard.views.SETTLEMENT_TOKEN``): 6 decimals.
TOKEN_DECIMALS = 6
TOKEN_SYMBOL = "tUSD"  # noqa: S105 (a currency symbol, not a secret)


def token_units(base_units: float) -> str:
    return f"{base_units / 10**TOKEN_DECIMALS:,.2f} {TOKEN_SYMBOL}"


def figures_rows(fig: BacktestFigures) -> list[tuple[str, str]]:
    """(label, shown value) pairs, the same in the HTML report, docs and dashboard."""
    return [
        ("seasons", f"{fig.seasons} ({fig.first_season}–{fig.last_season})"),
        ("payout_frequency", f"{fig.payout_frequency:.4f}"),
        ("burn_cost", f"{fig.burn_cost:.4f}"),
        ("pure_premium", token_units(fig.pure_premium)),
        ("loaded_premium", f"{token_units(fig.loaded_premium)} (loading {fig.loading:g})"),
        ("payout_1_in_10", token_units(fig.payout_1_in_10)),
        ("payout_1_in_20", token_units(fig.payout_1_in_20)),
        ("limit", token_units(fig.limit)),
    ]


def write_chart(run: Run, fig: BacktestFigures, path: Path) -> None:
    """Draw the two-panel chart into ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    terms = run.terms
    seasons = [s.season for s in run.seasons]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, window in enumerate(terms.windows):
        colour = colours[i % len(colours)]
        values = [s.windows[i].value for s in run.seasons]
        top.plot(seasons, values, marker=".", color=colour, label=window.name)
        trigger, exit_ = terms.window_trigger_exit(window)
        if trigger is not None:
            top.axhline(trigger, color=colour, linestyle="--", linewidth=0.8)
        if exit_ is not None:
            top.axhline(exit_, color=colour, linestyle=":", linewidth=0.8)
    unit = f" ({terms.index.unit})" if terms.index.unit else ""
    top.set_ylabel(f"{terms.index.kind.value}{unit}")
    top.set_title(f"{terms.name}: index per window (dashed trigger, dotted exit)")
    top.legend(loc="best", fontsize="small")
    bottom.bar(seasons, [s.payout / 10**TOKEN_DECIMALS for s in run.seasons], color="#b03a2e")
    bottom.axhline(fig.pure_premium / 10**TOKEN_DECIMALS, color="black", linewidth=0.8, linestyle="--")
    bottom.set_ylabel(f"season payout ({TOKEN_SYMBOL})")
    bottom.set_xlabel("season (year the coverage starts)")
    bottom.set_title(
        f"payout frequency {fig.payout_frequency:.3f}, burn cost {fig.burn_cost:.4f} (dashed: pure premium)"
    )
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)


def render_html(run: Run, fig: BacktestFigures, chart_name: str) -> str:
    """A self-contained page (no script, no outside resource) showing the figures and the chart."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in figures_rows(fig))
    worst = "".join(
        f"<tr><td>{w['season']}</td><td>{e(token_units(w['payout']))}</td><td>"
        + e(", ".join(f"{n}: {d['value']:g}" for n, d in w["windows"].items()))
        + "</td></tr>"
        for w in fig.worst_years
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest: {e(run.terms.name)}</title>
<style>body{{font-family:sans-serif;max-width:60rem;margin:2rem auto}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}}</style></head>
<body><h1>Backtest: {e(run.terms.name)}</h1>
<p>Product <code>{e(run.terms.id)}</code> version {run.terms.version},
hash <code>{e(fig.product_hash)}</code>.</p>
<table>{rows}</table>
<h2>Worst seasons</h2><table><tr><th>season</th><th>payout</th><th>index per window</th></tr>{worst}</table>
<h2>Chart</h2><img src="{e(chart_name)}" alt="index per window and season payouts" width="900">
</body></html>
"""


def write_report(run: Run, fig: BacktestFigures, out_dir: Path) -> tuple[Path, Path]:
    """Write ``<id>-backtest.png`` and ``<id>-backtest.html`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = out_dir / f"{run.terms.id}-backtest.png"
    page = out_dir / f"{run.terms.id}-backtest.html"
    write_chart(run, fig, chart)
    page.write_text(render_html(run, fig, chart.name), encoding="utf-8")
    return chart, page
