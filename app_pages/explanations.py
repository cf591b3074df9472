"""Explanations: galleries of what a model looked at in its surest right and wrong answers (the paper's Figs 4 and 5)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.widgets import code, md, model_label, models_and_results, run_page
from wildvision import catalog
from wildvision.explain import gallery, gallery_jobs
from wildvision.explain.saliency import METHODS
from wildvision.training.launch import page_path


def show(item: gallery_jobs.StoredGallery) -> None:
    st.subheader(f"{item.test_name}: {METHODS.get(item.method, item.method).split(' (')[0]}")
    if item.state == gallery_jobs.BEING_MADE:  # a spinner at once, its line refreshed by follow() while the process runs
        status = st.status(f"Being made, {md(gallery_jobs.progress_text(item))}", state="running")  # not `with`: on leaving it is "complete"
        status.caption(f"In the background: this page shows the gallery when it is done. Its files go to {code(item.folder)}.")
    elif item.state == gallery_jobs.FAILED:
        st.error(f"It stopped: {md(item.message or 'no output')} (see {code(item.folder / gallery.CONSOLE)})")
    elif item.pages:
        pages(item)
        checks(item)
    else:
        old_gallery(item)
        checks(item)


def pages(item: gallery_jobs.StoredGallery) -> None:
    """One 16:9 page at a time (a page's PNG is a few MB: the others are sent only when picked), the PDF of all pages
    and each page's PNG, under names that say the model, the test set and the method."""
    count = len(item.pages)
    number = 1
    if count > 1:
        number = st.radio("Page", range(1, count + 1), horizontal=True, format_func=lambda n: f"{n} of {count}", key=f"shown:{item.folder}")
    st.image(str(item.pages[number - 1]), caption=f"Page {number} of {count}: {item.images} photos, stored in {item.folder}")
    buttons = st.columns(min(count + 1, 6))
    if item.pdf is not None:
        buttons[0].download_button(
            "Slides (16:9 PDF)",
            item.pdf.read_bytes,
            file_name=item.download_name(".pdf"),
            mime="application/pdf",
            key=f"pdf:{item.folder}",
            on_click="ignore",
        )
    for index, page in enumerate(item.pages, 1):
        buttons[index % len(buttons)].download_button(
            f"Page {index} of {count} (PNG)",
            page.read_bytes,
            file_name=item.download_name(f"-page-{index}.png"),
            mime="image/png",
            key=f"page{index}:{item.folder}",
            on_click="ignore",
        )


def old_gallery(item: gallery_jobs.StoredGallery) -> None:
    """A gallery made before the 16:9 pages: its one tall figure, as it was stored."""
    st.image(str(item.preview), caption=f"{item.images} photos, stored in {item.folder}")
    st.caption("Made before galleries had 16:9 pages for slides: make it again to get them.")
    buttons = st.columns(4)
    if item.pdf is not None:
        buttons[0].download_button(
            "Download PDF", item.pdf.read_bytes, file_name=item.download_name(".pdf"), mime="application/pdf", key=f"pdf:{item.folder}", on_click="ignore"
        )
    buttons[1].download_button(
        "Whole figure (PNG)", item.png.read_bytes, file_name=item.download_name(".png"), mime="image/png", key=f"png:{item.folder}", on_click="ignore"
    )


def checks(item: gallery_jobs.StoredGallery) -> None:
    """The three checks of the maps: do they depend on the model, do they point at what drives the score, are they drawn to the border?"""
    with st.expander("Can these maps be trusted? Three checks", expanded=True):
        sanity = gallery_jobs.sanity_table(item)
        if sanity.empty:
            st.caption("The sanity check and the deletion curves were not run for this gallery.")
        else:
            st.markdown(
                "**Do the maps depend on the model?** The model's layers are replaced by random ones, from the top down, and each "
                "method's maps compared with the trained model's (Spearman correlation, 1 = unchanged; Adebayo et al. 2018). "
                "A method whose maps stay alike draws the photo's edges, not the model's reasons: it is flagged."
            )
            st.dataframe(
                sanity, hide_index=True, width="stretch", column_config={c: st.column_config.NumberColumn(format="%.2f") for c in sanity.columns[1:-1]}
            )
            deletion = gallery_jobs.faithfulness_table(item)
            st.markdown(
                "**Do the maps point at what drives the score?** The pixels each map marks brightest are blanked first, and the score "
                "followed as more go (deletion curve); the area under it is compared with blanking pixels in random order. Lower is better, "
                "but a method flagged above can still do well here (blanking a photo's edges lowers any score): trust one that passes both."
            )
            if deletion.empty:
                st.caption("No photo of this test set was flagged, so there was no score to bring down.")
            else:
                st.dataframe(
                    deletion,
                    hide_index=True,
                    width="stretch",
                    column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("Deletion AUC", "Random order AUC")},
                )
        border = gallery_jobs.border_table(item)
        st.markdown(
            f"**Maps drawn to the border** (a corner, watermark or caption the model may rely on, as in the paper's Fig S3): "
            f"{len(border):,} of the {item.flagged:,} flagged photos have {item.border_threshold:.0%} or more of their map in the outer "
            "tenth of the photo."
        )
        if not border.empty:
            st.dataframe(
                border,
                hide_index=True,
                width="stretch",
                column_config={"Score": st.column_config.NumberColumn(format="%.3f"), "Border share": st.column_config.NumberColumn(format="%.2f")},
            )


@st.fragment(run_every=3)
def follow(model: str, folder: Path, pending: list[gallery_jobs.StoredGallery]) -> None:
    """Galleries being made, checked every 3 s; the whole page reruns once one is done or stopped."""
    now = {item.folder: item for item in gallery_jobs.stored_galleries(model, runs_dir=folder)}
    if any(now.get(item.folder) is None or now[item.folder].state != gallery_jobs.BEING_MADE for item in pending):
        st.rerun()
    for item in pending:
        show(now[item.folder])


def gallery_form(record: catalog.ModelRecord, model: str | Path, folder: Path) -> None:
    """Test set, method and size of a new gallery, made in the background as the person's job."""
    with st.form("make_gallery"):
        tests = catalog.test_folders(record)
        columns = st.columns([2, 2, 1])
        if tests:
            test_name = columns[0].selectbox("Test set", list(tests), key="explain_test", help="The model's own labelled test sets found on this machine")
            test_dir = tests[test_name]
        else:
            test_dir = columns[0].text_input("Test folder (class sub-folders)", key="explain_folder")
            test_name = test_dir.rstrip("/").rsplit("/", 1)[-1] or "test"
        method = columns[1].selectbox("Method", list(METHODS), format_func=METHODS.get, key="explain_method")
        top = columns[2].number_input("Photos per section", 1, 32, gallery.DEFAULT_TOP, key="explain_top")
        if st.form_submit_button("Make the gallery", type="primary"):
            if not test_dir:
                st.error("Give a test folder first.")
            else:
                try:
                    test_dir = test_dir if tests else page_path(test_dir)  # a typed folder: through the data roots first
                    started = gallery_jobs.start_gallery(model, test_name, test_dir, method, int(top), runs_dir=folder, owner=team.person().identity)
                except (ValueError, OSError) as error:
                    st.error(f"The gallery was not started: {md(str(error))}")
                else:
                    st.success(f"Making the gallery in the background: {code(started)}")


def page() -> None:
    st.title("Explanations")
    st.caption(
        "For a model and one of its test sets: the photos it was surest about, right and wrong (true positives, true "
        "negatives, false positives, false negatives at its threshold), each beside a map of what raised its score, as in "
        "the paper's Figs 4 and 5, and the flagged photos whose maps are drawn to the border (Fig S3). A gallery is made "
        "once in the background and shown at once afterwards; download it as 16:9 pages for a slide (PNG each, or one PDF)."
    )

    records, _, folder = models_and_results()
    usable = [record for record in records if record.usable]
    if not usable:
        st.info("No model can explain anything yet: the default model is missing and no run has completed.")
        st.stop()
    record = st.selectbox("Model", usable, format_func=model_label, key="explain_model")
    model = gallery.model_argument(record)

    if team.allowed("gallery"):
        gallery_form(record, model, folder)

    stored = gallery_jobs.stored_galleries(model, runs_dir=folder)
    if not stored:
        st.info("No gallery for this model yet: choose a test set and a method, then press Make the gallery.")
    for item in stored:
        if item.state != gallery_jobs.BEING_MADE:
            show(item)
    pending = [item for item in stored if item.state == gallery_jobs.BEING_MADE]

    if pending:
        follow(model, folder, pending)


run_page(page, "Explanations")
