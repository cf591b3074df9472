"""Slides: 16:9 matplotlib figures, each a title that states its finding, one chart or picture, and a caption.

One renderer for every picture that leaves for a deck: the study deck's slides and the Results page's grid chart are
the same figures, so a number on a slide is printed exactly as the dashboard's table prints it (analysis.export's
formats). Figures are built without pyplot (no global state), so a page can draw one while another is drawn.
"""

from __future__ import annotations

import io
import logging
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rcParams
from matplotlib.figure import Figure
from PIL import Image

from wildvision.analysis.export import format_fixed, format_value, table_decimals
from wildvision.analysis.tidy import PAPER, RUN, TEST_SET_COLOURS, short_run_name

logging.getLogger("fontTools").setLevel(logging.WARNING)  # it logs every glyph it keeps when matplotlib embeds a font
rcParams["pdf.fonttype"] = 42  # TrueType in the PDF: its text can be searched and copied (pdftotext reads it)
rcParams["font.family"] = "DejaVu Sans"  # ships with matplotlib: the same letters on every machine

WIDTH, HEIGHT = 40 / 3, 7.5  # inches: PowerPoint's and Keynote's 16:9 slide
DPI = 144  # 1920 x 1080 pixels: full HD, a projector's width
BODY = (0.07, 0.17, 0.88, 0.62)  # left, bottom, width, height of the chart, in the slide's fractions
TITLE_CHARACTERS, CAPTION_CHARACTERS = 70, 140  # a line of the title (22 pt) and of the caption (11 pt) across the slide
GREY = "#555555"
PICTURE_WIDTH = 1600  # pixels a picture keeps on a slide: sharp on a projector, a few MB a slide in the PDF


def slide(title: str, caption: str, footer: str = "wildvision") -> Figure:
    """An empty 16:9 slide with its title (the finding, in words) on top and its caption at the bottom."""
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    figure.text(0.04, 0.95, "\n".join(textwrap.wrap(title, TITLE_CHARACTERS)[:2]), fontsize=22, fontweight="bold", va="top")
    figure.text(0.04, 0.035, "\n".join(textwrap.wrap(caption, CAPTION_CHARACTERS)[:3]), fontsize=11, color=GREY, va="bottom")
    figure.text(0.96, 0.012, footer, fontsize=8, color="#999999", ha="right", va="bottom")
    return figure


def png_bytes(figure: Figure) -> bytes:
    """The slide as a 1920 x 1080 PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def row_name(key: tuple) -> str:
    """A grid row as a slide names it: "resnet18 · transfer · paper" or "resnet18 · transfer · run 152103-05db"."""
    model, regime, origin, source = key
    return f"{model} · {regime} · " + ("paper" if origin == PAPER else f"run {short_run_name(source)}")


def grid_slide(table: pd.DataFrame, title: str, caption: str, diverging: bool = False) -> Figure:
    """A results grid (analysis.grid.results_grid: rows model, regime, origin, source; columns dataset, test set) as
    an annotated heat map, every cell printed with the table's own decimals (analysis.export.table_decimals) as the
    Results page prints it; differences to a baseline (``diverging``) signed, red below 0 and blue above."""
    figure = slide(title, caption)
    axes = figure.add_axes((0.28, BODY[1], 0.68, BODY[3]))  # room on the left for the rows' names
    values = table.to_numpy(dtype="float64", na_value=np.nan)
    decimals = table_decimals(table)
    if diverging:
        bound = float(np.nanmax(np.abs(values), initial=0.0)) or 1.0
        image = axes.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    else:
        image = axes.imshow(values, cmap="Blues", aspect="auto", vmin=np.nanmin(values, initial=0.0), vmax=np.nanmax(values, initial=1.0))
    size = max(6.0, min(11.0, 300 / max(len(table), 1)))
    for (row, column), value in np.ndenumerate(values):
        if math.isnan(value):
            axes.text(column, row, "–", ha="center", va="center", fontsize=size, color="#999999")
            continue
        light = image.norm(value) > 0.6 if not diverging else abs(image.norm(value) - 0.5) > 0.3
        axes.text(column, row, format_fixed(value, decimals, diverging), ha="center", va="center", fontsize=size, color="white" if light else "black")
    axes.set_yticks(range(len(table)), [row_name(key) for key in table.index], fontsize=size)
    axes.set_xticks(range(len(table.columns)), [f"{dataset}\n{test_set}" for dataset, test_set in table.columns], fontsize=10)
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    for side in axes.spines.values():
        side.set_visible(False)
    return figure


def grouped_bars_slide(
    panels: Sequence[tuple[str, pd.DataFrame]],
    title: str,
    caption: str,
    y_label: str,
    lines: dict[str, float] | None = None,
) -> Figure:
    """Bars per model, one per test set in the dashboard's colours, one panel each (``panels``: a panel's name and its
    rows with columns label, test_set, value, origin); own runs' bars hatched. ``lines``: a dashed line per test
    set (a reference value, explained by the caller's caption). Every bar carries its value, so a slide can be read
    without the tables."""
    figure = slide(title, caption)
    left, bottom, width, height = BODY
    gap = 0.04
    share = (width - gap * (len(panels) - 1)) / max(len(panels), 1)
    test_sets = [t for t in TEST_SET_COLOURS if any(t in set(rows["test_set"]) for _, rows in panels)]
    for number, (name, rows) in enumerate(panels):
        axes = figure.add_axes((left + number * (share + gap), bottom + 0.13, share, height - 0.18))  # room for slanted names and the legend
        labels = list(dict.fromkeys(rows["label"]))
        bar = 0.8 / max(len(test_sets), 1)
        for offset, test_set in enumerate(test_sets):
            part = rows[rows["test_set"] == test_set].drop_duplicates("label").set_index("label").reindex(labels)
            x = np.arange(len(labels)) + (offset - (len(test_sets) - 1) / 2) * bar
            hatches = ["//" if origin == RUN else "" for origin in part["origin"].fillna(PAPER)]
            bars = axes.bar(x, part["value"].fillna(0), bar, color=TEST_SET_COLOURS[test_set], hatch=None, edgecolor="white", linewidth=0.5, label=test_set)
            for drawn, hatch in zip(bars, hatches):
                drawn.set_hatch(hatch)
            for position, value in zip(x, part["value"]):
                if not pd.isna(value):
                    axes.text(position, value - 0.01, format_value(value), rotation=90, ha="center", va="top", fontsize=6.5, color="white")
            if lines and test_set in lines:
                axes.axhline(lines[test_set], color=TEST_SET_COLOURS[test_set], linestyle="--", linewidth=1.2)
        crowded = sum(len(str(label)) + 2 for label in labels) * 7 > share * WIDTH * 72  # level names would touch: slant them
        axes.set_xticks(range(len(labels)), labels, rotation=35 if crowded else 0, ha="right" if crowded else "center", fontsize=9 if crowded else 11)
        axes.set_ylim(0, 1.0)
        axes.set_title(name, fontsize=12)
        axes.spines[["top", "right"]].set_visible(False)
        if number == 0:
            axes.set_ylabel(y_label, fontsize=11)
        else:
            axes.tick_params(labelleft=False)
    handles = [figure.axes[0].bar([0], [0], color=TEST_SET_COLOURS[t], label=t) for t in test_sets] if figure.axes else []
    figure.legend(
        handles=[h[0] for h in handles], labels=test_sets, loc="upper right", bbox_to_anchor=(0.96, 0.845), ncols=len(test_sets), fontsize=10, frameon=False
    )
    return figure


def gain_slide(gains: pd.DataFrame, title: str, caption: str, shown: Sequence[str]) -> Figure:
    """The efficiency gain (analysis.efficiency.efficiency_table) as horizontal bars, highest gain on top, each bar
    labelled with ``shown`` (the page's printed gains, analysis.export.format_gain) and its F-score."""
    figure = slide(title, caption)
    left, bottom, width, height = BODY
    axes = figure.add_axes((left + 0.1, bottom, width - 0.2, height))
    rows = gains.iloc[::-1]
    labels = list(rows["model"])
    colours = ["#4c78a8" if value >= 0 else "#e45756" for value in rows["gain_per_million"]]
    axes.barh(range(len(rows)), rows["gain_per_million"], color=colours)
    axes.set_yticks(range(len(rows)), labels, fontsize=11)
    for position, (value, text, f_score) in enumerate(zip(rows["gain_per_million"], list(shown)[::-1], rows["f_score"])):
        axes.text(value, position, f"  {text}  (F {format_value(f_score)})  ", va="center", ha="left" if value >= 0 else "right", fontsize=10)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("gain: F-score per million parameters beyond SqueezeNet's", fontsize=11)
    axes.spines[["top", "right"]].set_visible(False)
    low, high = min(rows["gain_per_million"].min(), 0.0), max(rows["gain_per_million"].max(), 0.0)
    span = high - low or 1.0
    axes.set_xlim(low - (0.45 if low < 0 else 0.02) * span, high + 0.45 * span)
    return figure


def picture_slide(picture: str | Path, title: str, caption: str) -> Figure:
    """A picture (a gallery page) under its title, scaled to ``PICTURE_WIDTH`` pixels so the PDF stays small."""
    figure = slide(title, caption)
    with Image.open(picture) as opened:
        image = opened.convert("RGB")
    if image.width > PICTURE_WIDTH:
        image = image.resize((PICTURE_WIDTH, round(image.height * PICTURE_WIDTH / image.width)), Image.Resampling.LANCZOS)
    axes = figure.add_axes((0.04, 0.13, 0.92, 0.72))
    axes.imshow(np.asarray(image), interpolation="antialiased")
    axes.set_axis_off()
    return figure


def text_slide(title: str, lines: Sequence[tuple[str, str]], caption: str = "") -> Figure:
    """A slide of terms and their explanations (a glossary, the data used): each a bold term and its plain words."""
    figure = slide(title, caption)
    y = 0.84
    size = 13 if len(lines) <= 8 else 11
    for term, words in lines:
        wrapped = textwrap.wrap(words, 95 if size == 13 else 112)
        figure.text(0.05, y, term, fontsize=size, fontweight="bold", va="top")
        figure.text(0.24, y, "\n".join(wrapped), fontsize=size, va="top")
        y -= (0.028 if size == 11 else 0.033) * len(wrapped) + 0.025
    return figure
