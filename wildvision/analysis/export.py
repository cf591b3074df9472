"""Tables and charts as they leave the dashboard: colours, number formats, CSV, LaTeX and chart PNGs for a slide."""

from __future__ import annotations

import html
import math
import re
import textwrap
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from wildvision.catalog import RUN
from wildvision.spreadsheet import frame_csv


def colour_scaled(table: pd.DataFrame, diverging: bool = False) -> pd.io.formats.style.Styler:
    """The table with its cells coloured on one scale over the whole table (matplotlib colour maps).

    Plain values run from light to dark blue; differences to a baseline (``diverging``) run red below
    0, white at 0 and blue above, symmetric so equal gains and losses look equally strong. Empty cells
    stay uncoloured and the text colour follows the background.
    """
    if diverging:
        bound = float(np.nanmax(np.abs(table.to_numpy(dtype="float64", na_value=np.nan)), initial=0.0)) or 1.0
        styled = table.style.background_gradient(cmap="RdBu", axis=None, vmin=-bound, vmax=bound)
    else:
        styled = table.style.background_gradient(cmap="Blues", axis=None)
    return styled.highlight_null(props="background-color: transparent; color: inherit")  # pandas paints empty cells black


def format_difference(value: float, decimals: int = 3) -> str:
    """A difference to a baseline with its sign ("+0.020", "-0.150"); "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    return f"{value:+.{decimals}f}"


def format_value(value: float, decimals: int = 4) -> str:
    """A number as the tables print it: up to ``decimals`` decimals, at least two, no trailing zeros
    beyond that ("0.9486", "0.94", "0.957"), so the paper's printed digits survive; "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    text = f"{value:.{decimals}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{whole}.{fraction}"


def table_decimals(table: pd.DataFrame, most: int = 4, least: int = 2) -> int:
    """One number of decimals for a whole table: the fewest (at least ``least``, at most ``most``) that
    print every number in it as stored, so no digit the paper printed is lost ("0.9486" needs 4) and
    the columns line up ("0.940", "0.957", not "0.94", "0.957"). Own runs' measurements, which have
    more digits than that, get ``most``.
    """
    values = table.select_dtypes("number").to_numpy(dtype="float64", na_value=np.nan).ravel()
    values = values[np.isfinite(values)]
    for decimals in range(least, most):
        if np.all(np.abs(np.round(values, decimals) - values) < 1e-9):
            return decimals
    return most


def format_fixed(value: float, decimals: int, signed: bool = False) -> str:
    """A number with exactly ``decimals`` decimals ("0.940"), with its sign when ``signed`` ("+0.020",
    "-0.150", "+0.000" for an exact tie); "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def fixed_formatter(table: pd.DataFrame, signed: bool = False):
    """``format_fixed`` with the table's own ``table_decimals``: one formatter per table, for Styler.format."""
    decimals = table_decimals(table)
    return lambda value: format_fixed(value, decimals, signed)


def format_gain(value: float, significant: int = 3) -> str:
    """A gain (F-score per million extra parameters) in plain decimals with ``significant`` significant
    digits, whatever its size: "+0.0177", "+0.0000234", "-0.00547"; exactly "0" for no gain at all,
    so a small non-zero gain never reads "+0.0000". "--" when empty."""
    if value is None or pd.isna(value):
        return "--"
    if value == 0:
        return "0"
    rounded = _round_significant(value, significant)  # first, so 0.000999999 becomes 0.00100, not 0.001000
    return f"{rounded:+.{max(0, significant - 1 - math.floor(math.log10(abs(rounded))))}f}"


def _round_significant(value: float, significant: int) -> float:
    if not math.isfinite(value) or value == 0:
        return value
    return round(value, max(0, significant - 1 - math.floor(math.log10(abs(value)))))


def _flat_label(key: object) -> str:
    return " / ".join(str(k) for k in key) if isinstance(key, tuple) else str(key)


def to_csv(df: pd.DataFrame, significant: int = 6) -> str:
    """CSV text of a table, one header row (a column MultiIndex becomes "bg / test_in") so spreadsheets
    read it directly; row index levels become ordinary columns.

    Floats are rounded to ``significant`` significant digits (whole numbers keep all their digits),
    which removes the noise of binary arithmetic (0.75 - 0.64 is 0.10999999999999999 in floating
    point; the CSV says 0.11) and keeps more digits than any table prints. Text a spreadsheet would run as
    a formula (a run's name such as "=cmd|...") is written as text (wildvision.spreadsheet).
    """
    flat = df.copy()
    for column in flat.columns[[pd.api.types.is_float_dtype(t) for t in flat.dtypes]]:
        flat[column] = flat[column].map(lambda v: _round_significant(v, significant))
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [_flat_label(c) for c in flat.columns]
    has_index = not (isinstance(flat.index, pd.RangeIndex) and flat.index.name is None)
    return frame_csv(flat, index=has_index)


#: Characters LaTeX treats specially, and non-ASCII ones the dashboard writes, as LaTeX text.
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "·": r"\textperiodcentered{}",
    "–": "--",
    "—": "---",
    "“": "``",
    "”": "''",
    "‘": "`",
    "’": "'",
    "×": r"\texttimes{}",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "…": r"\dots{}",
}


def latex_escape(text: str) -> str:
    """Plain text (a caption, a run name) as LaTeX that prints it literally: squeezenet1_0 ->
    squeezenet1\\_0, 95% -> 95\\%, and the few non-ASCII marks the pages use (·, –, “ ”) as LaTeX commands."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in str(text))


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str | None = None, signed: bool = False, decimals: int | None = None) -> str:
    """A booktabs LaTeX table of ``df`` (needs only \\usepackage{booktabs}), ready for a paper or slide.

    Every float is printed with one number of decimals for the whole table (``table_decimals`` unless
    ``decimals`` is given; with a sign when ``signed``, for differences), whole-number columns as whole
    numbers, "--" for empty cells. The caption is plain text and is escaped (``latex_escape``), as are
    labels in the index and header (test\\_in). Row MultiIndexes print each label once, on its first
    row, and column MultiIndexes become \\multicolumn headers, as in the paper's tables.
    """
    numeric = list(df.select_dtypes("number").columns)
    whole = [c for c in numeric if pd.api.types.is_integer_dtype(df[c].dtype)]
    floats = [c for c in numeric if c not in set(whole)]
    decimals = table_decimals(df[floats]) if decimals is None else decimals
    styler = df.style.format(lambda v: format_fixed(v, decimals, signed), subset=floats, na_rep="--", escape="latex")
    if whole:
        styler = styler.format("{:d}", subset=whole, na_rep="--")
    other = [c for c in df.columns if c not in set(numeric)]
    if other:
        styler = styler.format(na_rep="--", escape="latex", subset=other)
    styler = styler.format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    styler = styler.format_index_names(escape="latex", axis=0).format_index_names(escape="latex", axis=1)
    if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
        styler = styler.hide(axis="index")
    latex = styler.to_latex(
        hrules=True,
        multicol_align="c",
        multirow_align="naive",  # no \multirow: the multirow package is not needed
        caption=latex_escape(caption) if caption else None,
        label=label,
        position_float="centering" if caption or label else None,
        environment="table" if caption or label else None,
    )
    return "% needs \\usepackage{booktabs}\n" + latex


def chart_config(filename: str) -> dict:
    """The Plotly config every analysis chart gets: its camera button saves a PNG at twice the on-screen
    resolution (sharp in a slide deck) under ``filename`` (made file-name safe, ".png" added by the
    browser), and no Plotly logo in the toolbar. Pass it as ``st.plotly_chart(figure, config=...)``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", str(filename)).strip("-.") or "wildvision-chart"
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": safe, "scale": 2}}


def label_positions(x: Sequence[float], y: Sequence[float], log_x: bool = True, near_x: float = 0.2, near_y: float = 0.05) -> list[str]:
    """Where each point's text label goes on a scatter: above it, or below it when another point whose label is
    above sits close by (within ``near_x`` decades, or units without ``log_x``, and ``near_y``) and higher up, so
    two nearby labels (vgg11_bn and vgg19_bn) do not print over each other."""
    xs = [math.log10(float(v)) if log_x else float(v) for v in x]
    ys = [float(v) for v in y]
    positions = ["top center"] * len(xs)
    for i in sorted(range(len(xs)), key=lambda k: -ys[k]):  # highest first: they keep their label above
        for j in range(len(xs)):
            higher = ys[j] > ys[i] or (ys[j] == ys[i] and j < i)
            if j != i and higher and positions[j] == "top center" and abs(xs[j] - xs[i]) < near_x and abs(ys[j] - ys[i]) < near_y:
                positions[i] = "bottom center"
                break
    return positions


#: One font for every chart, named explicitly: the page's web font (Streamlit's theme) is not available when
#: Plotly draws the PNG, so a fallback font wider than the one measured overflowed legends ("positive gai").
CHART_FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"


#: Pixels of white kept on each side of a chart. Streamlit's theme sets the left and right margins to 0, so a plot
#: with nothing beside it (the right-hand learning curve) ran to the edge of the exported picture and lost its last tick.
EDGE = 24
#: A transparent legend border, in pixels: room between a legend and the plot beside it and the picture's edge.
LEGEND_PAD = 10


#: Pixels between the plot area's bottom and a caption: below the tick labels and the axis title; for slanted tick
#: labels, as many more per character of the longest as it reaches down.
CAPTION_BELOW, SLANTED_CHARACTER = 62, 4
#: Characters of a chart's caption on one line: what fits the narrowest chart a page draws (a third of a wide page).
CAPTION_LINE = 110
#: Pixels a caption line and a title line take (12 and 16 px text), and the title's size.
CAPTION_LINE_HEIGHT, TITLE_LINE_HEIGHT, TITLE_SIZE = 17, 22, 16
#: Pixels of white above a title, and between it and what the chart had at its top (a legend, panel titles).
TITLE_PAD, TITLE_GAP = 12, 14


def wrapped(text: str, characters: int) -> list[str]:
    """Plain text as lines of at most ``characters`` (a word longer than that gets a line of its own), each
    HTML-escaped: a run's name in a title or caption is data, never Plotly markup."""
    return [html.escape(line, quote=False) for line in textwrap.wrap(text, max(characters, 20), break_long_words=False, break_on_hyphens=False)]


def export_ready(figure, caption: str = "", line: int = CAPTION_LINE, *, title: str = ""):
    """The Plotly figure with ``CHART_FONT`` for all its text (layout, title, facet and subplot titles), so
    its PNG export (``chart_config``) lays out exactly as on screen, at least ``EDGE`` pixels of margin left and right,
    and room around its legend (``LEGEND_PAD``); returns it.

    A PNG dropped into a deck has lost the page around it, so the picture says itself what it shows: ``title`` (what
    the chart shows, naming the model where it is about one) goes at its top, above whatever the chart had there;
    ``caption`` (what the marks mean and where the numbers come from, in plain words) goes below its axes. Both are
    plain text, wrapped to ``line`` characters (fewer for a narrow chart; taken from the figure's width when it has
    one), and the margins and the height grow to hold them, so the plot keeps its size."""
    figure.update_layout(font_family=CHART_FONT, title_font_family=CHART_FONT)
    figure.update_annotations(font_family=CHART_FONT)
    margin = figure.layout.margin
    figure.update_layout(margin={"l": max(margin.l or 0, EDGE), "r": max(margin.r or 0, EDGE)})
    if not figure.layout.legend.borderwidth:
        figure.update_layout(legend={"borderwidth": LEGEND_PAD, "bordercolor": "rgba(0,0,0,0)"})
    # margins grow to hold the tick labels and axis titles: a class or model name cut at the picture's edge names nothing
    figure.update_xaxes(automargin=True)
    figure.update_yaxes(automargin=True)
    if figure.layout.width:
        line = min(line, int(figure.layout.width / 7))  # about 7 px a character of 12 px Arial
    if title:
        lines = wrapped(title, int(line * 0.75))  # 16 px text: three quarters as many characters as the caption
        block = TITLE_PAD + TITLE_LINE_HEIGHT * len(lines) + TITLE_GAP
        height = (figure.layout.height or 450) + block
        figure.update_layout(
            title={
                "text": "<br>".join(lines),
                "x": 0,
                "xref": "container",  # from the picture's left edge, not the plot's: a narrow chart has room for it
                "xanchor": "left",
                "pad": {"l": EDGE},
                "y": 1 - TITLE_PAD / height,  # the title's pad is not applied to a title placed in the container
                "yref": "container",
                "yanchor": "top",
                "font": {"size": TITLE_SIZE, "family": CHART_FONT},
            },
            margin={"t": (margin.t if margin.t is not None else 30) + block},
            height=height,
        )
    if caption:
        lines = wrapped(caption, line)
        slanted = any(axis.tickangle not in (None, 0) for axis in figure.select_xaxes())
        longest = max((len(str(x)) for trace in figure.data if getattr(trace, "x", None) is not None for x in trace.x), default=10)
        below = CAPTION_BELOW + (SLANTED_CHARACTER * longest if slanted else 0)  # clear of the tick labels and the axis title
        figure.add_annotation(
            text="<br>".join(lines),
            xref="paper",
            yref="paper",
            x=0,
            y=0,
            xanchor="left",
            yanchor="top",
            xshift=EDGE - figure.layout.margin.l,  # from the picture's left edge, as the title
            yshift=-below,
            align="left",
            showarrow=False,
            font={"size": 12, "color": "#555555", "family": CHART_FONT},
        )
        bottom = below + CAPTION_LINE_HEIGHT * len(lines) + 12
        figure.update_layout(margin={"b": bottom}, height=(figure.layout.height or 450) + max(0, bottom - (margin.b or 80)))  # the plot keeps its size
    return figure


#: How a chart's caption names the shipped demo data: a proxy, never the paper's data.
DEMO_PROXY = "the demo proxy data (photos of cats and dogs)"


def trained_on_words(demo: bool) -> str:
    """What one own run was trained on, for a caption: the demo proxy data or its own data, never the paper's."""
    return f"{DEMO_PROXY if demo else 'its own data'}, not the paper's"


def own_runs_words(frame: pd.DataFrame, marks: str = "") -> str:
    """What a chart's caption says of the own runs in a tidy frame (``origin``, ``demo``): that they are own runs,
    on the demo proxy data whenever any was trained on it, and never the paper's; "" when there are none. ``marks``
    says how the chart draws them ("hatched bars, named (run …)")."""
    own = frame[frame["origin"] == RUN]
    if own.empty:
        return ""
    demo = own.drop_duplicates("source")["demo"].astype(bool)
    if demo.all():
        data = f"own runs on {DEMO_PROXY}"
    elif demo.any():
        data = f"own runs, some on {DEMO_PROXY}"
    else:
        data = "own runs on their own data"
    return f"{marks}: {data}, not the paper's results." if marks else f"{data[0].upper()}{data[1:]}, not the paper's results."


def f_axis_range(values: Iterable[float], headroom: float = 0.05) -> list[float]:
    """A y-axis range for a scatter of F-scores (fractions in [0, 1]): a little below the lowest point
    and above the highest, on tenths, with ``headroom`` for the point labels above the markers, but never
    below 0 or beyond 1 + ``headroom`` (Plotly's own range for one or two points runs far past 1)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return [0.0, 1.0 + headroom]
    low = max(0.0, math.floor((min(finite) - 0.05) * 10) / 10)
    high = min(1.0 + headroom, math.ceil((max(finite) + 0.05) * 10) / 10 + headroom)
    return [round(low, 2), round(high, 2)]
