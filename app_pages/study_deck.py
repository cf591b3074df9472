"""The study deck, from Home and the Results page: made in the background, then its PDF and slides to download."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.widgets import code, md, request_lines
from wildvision import runs
from wildvision.reports import deck, slides

SHOWN = 3  # the newest decks listed


def deck_section() -> None:
    """A button that makes the study deck, and the newest decks: ready to download, being made, or why not."""
    folder = runs.default_runs_dir()
    st.caption(
        "The study deck puts the results grid, the drop out of distribution (Figs 1 and 2), the efficiency gain (Fig 3), a "
        "gallery page per model and test set (from the Explanations page), the data used and a glossary on 16:9 slides, "
        "as one PDF and a PNG per slide. Own runs are named as runs, never as the paper's."
    )
    may = team.person().may("export")
    if st.button("Make the study deck", disabled=not may, key="make-deck", help=None if may else "Making a deck needs the operator role."):
        try:
            deck.start_deck(folder, owner=team.person().identity)
        except (OSError, ValueError) as error:  # ValueError: jobs.TooManyJobs
            st.error(f"The deck was not started: {error}")
        else:
            st.success("The deck is being made in the background (about half a minute); it is listed below when ready.")
    request_lines(partial(newest_decks, str(folder)), deck_line)


def newest_decks(folder: str) -> list:
    return deck.deck_requests(folder)[:SHOWN]


def deck_line(request) -> None:
    pdf: Path = request.output
    if request.state == "running":
        st.caption(f"Study deck {code(pdf.name)}: {md(request.detail) if request.detail else 'being made…'}")
    elif request.state == "failed":
        st.warning(f"Study deck {code(pdf.name)} was not made: {md(request.detail)}")
    else:
        cells = st.columns(2)
        cells[0].download_button(f"Study deck {pdf.name}", pdf.read_bytes, pdf.name, "application/pdf", key=f"deck-pdf-{pdf.name}", on_click="ignore")
        cells[1].download_button(
            f"Its {len(deck.slide_pngs(pdf))} slides as PNGs (zip)",
            lambda: deck.slides_zip(pdf),
            pdf.with_suffix(".zip").name,
            "application/zip",
            key=f"deck-png-{pdf.name}",
            on_click="ignore",
        )


def grid_chart_button(table, title: str, caption: str, difference: bool, file_stem: str) -> None:
    """The grid as shown (filters, order, baseline, differences) as one 16:9 slide PNG, drawn only when asked for."""
    st.download_button(
        "Download the grid as a chart (PNG)",
        lambda: slides.png_bytes(slides.grid_slide(table, title, caption, diverging=difference)),
        f"{file_stem}.png",
        "image/png",
        key="grid-chart",
        help="A 16:9 slide (1920 x 1080) of the table above, each cell printed as the table prints it.",
        on_click="ignore",
    )
