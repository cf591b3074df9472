"""The Review page's listing parts, for a job screened from a manifest of scraped listings (screening.listings):
each card's listing (title, date, platform, seller, a link out), a listing's photos opened together, and the sidebar's
platform and date filters.

Listing text is scraped text: titles, sellers and platforms are shown as plain text (widgets.md), and a listing's URL
only ever as a plain link, and only when it is an http(s) address (listings.is_web_url, checked again here).
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from app_pages.widgets import md
from wildvision import wording
from wildvision.screening import listings, review

LISTING_KEY = "review-listing"  # session state: the listing whose photos are shown together


def has_listings(items: pd.DataFrame) -> bool:
    return "listing_key" in items


def listing_filters(items: pd.DataFrame) -> dict[str, str | None]:
    """The sidebar's platform and date range for a job with listings, as review.Filters' keyword arguments."""
    chosen: dict[str, str | None] = {"platform": None, "date_from": None, "date_to": None, "listing": st.session_state.get(LISTING_KEY)}
    if not has_listings(items):
        return chosen
    st.sidebar.subheader("Listings")
    platforms = sorted(platform for platform in items["platform"].unique() if platform)
    if platforms:
        platform = st.sidebar.selectbox("Platform", ["all platforms", *platforms], format_func=wording.plain_name)  # options are plain text
        chosen["platform"] = None if platform == "all platforms" else platform
    days = pd.to_datetime(items["listing_date"].str[:10], format="%Y-%m-%d", errors="coerce").dropna()
    if not days.empty and st.sidebar.checkbox("Only listings dated between", key="listing-dates"):
        span = st.sidebar.date_input("Listing dates", (days.min().date(), days.max().date()), label_visibility="collapsed")
        if isinstance(span, tuple) and len(span) == 2 and all(isinstance(day, date) for day in span):
            chosen["date_from"], chosen["date_to"] = span[0].isoformat(), span[1].isoformat()
    return chosen


def listing_card(row: pd.Series, key: str) -> None:
    """A card's listing: its title as plain text, date, platform and seller, a link out for an http(s) URL, and the
    button that opens all of the listing's photos."""
    if not row.get("listing_key"):
        return
    if row["title"]:
        st.markdown(md(row["title"][:300]))
    said = " · ".join(md(value) for value in (row["platform"], row["listing_date"], row["seller"]) if value)
    if said:
        st.caption(said)
    if listings.is_web_url(row["listing_url"]):
        st.link_button("Open the listing", row["listing_url"])
    if row["listing_photos"] > 1 and st.session_state.get(LISTING_KEY) is None:
        label = f"{row['listing_photos']} photos of listing {md(row['listing_id'] or 'with this URL')}"  # a label is Markdown
        st.button(label, key=f"listing-{key}", on_click=st.session_state.__setitem__, args=(LISTING_KEY, row["listing_key"]))


def listing_banner(filters: review.Filters, shown: pd.DataFrame) -> None:
    """While one listing's photos are shown: how many, and the way back."""
    if filters.listing is None:
        return
    ident = shown["listing_id"].iloc[0] if not shown.empty else ""
    st.info(f"Showing the {len(shown)} photos of listing {md(ident or 'with this URL')}. Each photo is decided on its own.")
    st.button("Back to all listings", on_click=st.session_state.pop, args=(LISTING_KEY, None))
