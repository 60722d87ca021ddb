"""Every table as a readable HTML page next to its CSV, for `snakemake --report` (which offers a
CSV only as a download but shows an HTML result in place).

`write_csv(frame, path)` writes `path` and `path` with the suffix `.html`: a self-contained page
(no network) with the table, numbers right-aligned, and headers that sort the rows on click.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

# Click a header: sort by that column, numbers as numbers, empty cells last; click again to reverse.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, column) => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0];
  const ascending = th.dataset.order !== "ascending";
  th.closest("tr").querySelectorAll("th").forEach((h) => delete h.dataset.order);
  th.dataset.order = ascending ? "ascending" : "descending";
  const key = (row) => row.cells[column].textContent.trim();
  const compare = (a, b) => {
    const [x, y] = [key(a), key(b)];
    if (x === "" || y === "") return (x === "") - (y === "");
    const [u, v] = [Number(x), Number(y)];
    const order = Number.isNaN(u) || Number.isNaN(v) ? x.localeCompare(y) : u - v;
    return ascending ? order : -order;
  };
  [...body.rows].sort(compare).forEach((row) => body.appendChild(row));
}));
"""

STYLE = """
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 12px; color: #1b1b1b; }
table { border-collapse: collapse; }
th, td { border: 1px solid #c8ced6; padding: 3px 6px; white-space: nowrap; }
/* long column names wrap: a wide table's numbers stay in view */
th { background: #dde7f3; cursor: pointer; position: sticky; top: 0; white-space: normal; max-width: 9em; }
th[data-order="ascending"]::after { content: " \\25B2"; }
th[data-order="descending"]::after { content: " \\25BC"; }
tbody tr:nth-child(even) { background: #f4f6f9; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; padding-bottom: 6px; color: #444; }
"""


def html_path(csv: str | Path) -> Path:
    """The HTML page written next to table `csv` (same name, suffix `.html`)."""
    return Path(csv).with_suffix(".html")


def table_page(frame: pd.DataFrame, title: str) -> str:
    """`frame` as a self-contained HTML page: one sortable table, empty cells for missing values,
    numeric columns (every non-empty cell a number) right-aligned."""
    numeric = {c for c in frame.columns if pd.to_numeric(frame[c].dropna(), errors="coerce").notna().all()}
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values, strict=True):
            text = "" if pd.isna(value) else str(value)
            kind = ' class="number"' if column in numeric else ""
            cells.append(f"<td{kind}>{html.escape(text)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"{html.escape(title)} ({len(frame)} rows; click a header to sort)"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n<table class=\"sortable\"><caption>{caption}</caption>\n"
            f"<thead><tr>{header}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
            f"<script>{SORT_SCRIPT}</script>\n</body></html>\n")


def write_csv(frame: pd.DataFrame, csv: str | Path, title: str | None = None) -> Path:
    """Write `frame` to `csv` (no index) and its HTML page next to it; returns the page's path."""
    csv = Path(csv)
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    page = html_path(csv)
    # The page shows the cells exactly as the CSV writes them (read back as text: same rounding,
    # counts as "3" not "3.0", blanks for missing values).
    page.write_text(table_page(pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""]), title or csv.stem))
    return page
