"""A self-contained HTML report of a comparison: opens from an e-mail with no network.

The table, the plots (plotly, its JavaScript embedded once), each run's recipe and how every figure was
measured, in one file.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from pruner_core.compare.compare import Entry
from pruner_core.present.compare_table import comparison_table, display_table, headlines, measurement_notes, table_notes
from pruner_core.present.figures import finetune_overlay, pareto_plot, per_class_change, sparsity_comparison

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;font-size:.85rem;margin:1rem 0} th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr.original td{background:#f9fbff}
pre{background:#f6f8fa;padding:.8rem;overflow:auto;font-size:.85rem} .warn{color:#8a5300}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem} ul.how li{margin:.2rem 0;font-size:.9rem}
"""


def _figure(fig: go.Figure) -> str:
    fig.update_layout(template="plotly")  # not the app's theme (Streamlit sets its own default): colours of their own
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _table_html(entries: list[Entry]) -> str:
    table = display_table(comparison_table(entries))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for (_, r), e in zip(table.iterrows(), entries, strict=True):
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in r)
        rows.append(f'<tr class="{html.escape(e.kind)}">{cells}</tr>')
    return f'<table id="comparison"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def html_report(entries: list[Entry], *, title: str = "Pruning report", classes: list[str] | None = None, data_label: str = "") -> str:
    """The report as one HTML document (about 5 MB: plotly.js is embedded, so it draws offline).

    Args:
        entries: :func:`~pruner_core.compare.compare`'s entries, the original first.
        title: the heading.
        classes: class names for the per-class plot.
        data_label: the data set the figures were measured on.
    """
    table = comparison_table(entries)
    figures = [pareto_plot(table, "latency"), pareto_plot(table, "size"), sparsity_comparison(entries),
               per_class_change(entries, classes)]
    if any(e.history for e in entries):
        figures.append(finetune_overlay(entries))
    notes = [f"<li class='warn'>{html.escape(line)}</li>" for line in table_notes(table)]  # one line per model
    recipe_html = "".join(
        f"<h3>{html.escape(key)}</h3><pre>{html.escape(text)}</pre>" for key, text in ((e.key, e.recipe) for e in entries if e.recipe)
    )
    how = "".join(f"<li>{html.escape(line)}</li>" for line in measurement_notes(entries))
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='sub'>Pruning Explorer · {created}"
        + (f" · measured on {html.escape(data_label)}" if data_label else "") + "</p>",
        "<h2>In one line each</h2><ul class='headlines'>",
        *(f"<li>{html.escape(line)}</li>" for line in headlines(table)), "</ul>",
        "<h2>Comparison</h2>", _table_html(entries),
        ("<ul class='notes'>" + "".join(notes) + "</ul>") if notes else "",
        "<h2>Plots</h2><div class='grid'>", *(f"<div>{_figure(f)}</div>" for f in figures), "</div>",
        "<h2>How each figure was measured</h2><ul class='how'>", how, "</ul>",
        ("<h2>Recipes</h2><p>Each reproduces its run with <code>pruner prune MODEL --recipe recipe.yaml --out DIR</code>.</p>"
         + recipe_html) if recipe_html else "",
        "</body></html>",
    ]
    return "".join(parts)


def write_report(path: str | Path, entries: list[Entry], **kwargs) -> Path:
    """Write :func:`html_report` to ``path`` and return it."""
    path = Path(path)
    path.write_text(html_report(entries, **kwargs), encoding="utf-8")
    return path
