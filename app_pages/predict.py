"""Predict page: score uploaded photos with a trained model and show which parts of each photo drove the score.

Written for NGO staff with no machine-learning background: plain words, one line per problem, and never a
traceback. The work itself lives in wildvision (uploads.unpack_uploads, and saliency.examine, which gives each photo's
score, map and display-sized copy from one decode and takes the shared model's lock itself); this file only lays it
out. It is a page of Home.py's st.navigation, so it does not call st.set_page_config.
"""

from __future__ import annotations

import base64
import io
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageDraw

from app_pages.widgets import md, model_label, run_page, threshold_tradeoff
from wildvision import catalog, model_card, runs, wording
from wildvision.explain import saliency
from wildvision.predict import CheckpointError, LoadedModel, load_model
from wildvision.settings import load_settings
from wildvision.spreadsheet import frame_csv
from wildvision.uploads import UploadLimits, unpack_uploads

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "zip"]
DISPLAY_MAX = 640  # longest side, in pixels, of the photos and maps shown on the page
THUMBNAIL_MAX = 96
NOTE_WIDTH = 280  # pixels: the table's note column holds "the photo is damaged or cut short" whole
GRID_PAGE = 12  # saliency maps shown at once when many photos are uploaded
GRID_COLUMNS = 4
MAP_METHODS = ("gradcam", "saliency")  # saliency.FAST_METHODS, the readable map first; the paper's one click away
CSV_DECIMALS = 4


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _load(model: str, mtime_ns: int) -> LoadedModel:
    """One model object per checkpoint version, shared by every session (mtime in the key: retrained = reloaded)."""
    return load_model(model, device="auto")


def _model_key(choice: catalog.ModelRecord) -> tuple[str, int]:
    return choice.model, choice.checkpoint.stat().st_mtime_ns


# --- cached work ---------------------------------------------------------------------------------

# What the page keeps of a photo, from saliency.examine (a plain dict, because st.cache_data pickles it and classes
# defined in a page script do not unpickle): "probability" and "error" (one of them None), "photo" (display size, as JPEG bytes; None
# when unreadable), "thumbnail" (a data URL for the table), and for a readable photo its map as a MapRecord's keys.
PhotoRecord = dict
# A map as the page keeps it: "heatmap" (uint8 at the photo's display size, a quarter of float32's memory), "method",
# "target", "blank".
MapRecord = dict


@st.cache_data(max_entries=8, show_spinner=False)
def _examined(model_key: tuple, digests: tuple[str, ...], method: str, _loaded: LoadedModel, _paths: tuple[Path, ...]) -> list[PhotoRecord]:
    """Everything shown of each photo, decoding each file once; keyed by the model, the photos' contents and the map.

    An entry holds each photo at display size as JPEG bytes and its map as uint8, about 0.4 MB per 640 x 480 photo,
    so a full upload of 500 photos is about 200 MB: 8 entries rather than the 64 that scores alone once had.
    """
    return [_photo_record(examined) for examined in saliency.examine(_loaded, list(_paths), method, DISPLAY_MAX)]


def _photo_record(examined: saliency.Examined) -> PhotoRecord:
    if examined.explanation is None:
        return {"probability": None, "error": examined.error, "photo": None, "thumbnail": _placeholder_url()}
    return {
        "probability": examined.explanation.probability,
        "error": None,
        "photo": _jpeg(examined.image, quality=90),  # a tenth of the raw pixels' memory in the cache
        "thumbnail": _thumbnail_url(examined.image),
        "unusual": bool(examined.explanation.unusual),
        **_record(examined.explanation),
    }


def _record(explanation: saliency.Explanation) -> MapRecord:
    heatmap = (explanation.heatmap * 255).round().astype(np.uint8)
    return {"heatmap": heatmap, "method": explanation.method, "target": explanation.target, "blank": explanation.blank}


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _jpeg_url(image: Image.Image) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(_jpeg(image, quality=80)).decode("ascii")


def _shown_photo(record: PhotoRecord) -> Image.Image:
    """The display-sized photo kept in a record (as JPEG bytes)."""
    return Image.open(io.BytesIO(record["photo"])).convert("RGB")


@st.cache_data(show_spinner=False)
def _placeholder_url() -> str:
    """A plain grey tile with a cross, for a file with no photo to show: a table cell never reads "None"."""
    tile = Image.new("RGB", (THUMBNAIL_MAX, THUMBNAIL_MAX), (236, 236, 236))
    draw = ImageDraw.Draw(tile)
    margin = THUMBNAIL_MAX // 4
    for start, end in (
        ((margin, margin), (THUMBNAIL_MAX - margin, THUMBNAIL_MAX - margin)),
        ((margin, THUMBNAIL_MAX - margin), (THUMBNAIL_MAX - margin, margin)),
    ):
        draw.line((start, end), fill=(170, 170, 170), width=4)
    return _jpeg_url(tile)


def _thumbnail_url(photo: Image.Image) -> str:
    """The table's small copy, made from the display-sized photo rather than a second decode of the file."""
    thumbnail = photo.copy()
    thumbnail.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX))
    return _jpeg_url(thumbnail)


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def map_caption(record: MapRecord) -> str:
    return wording.map_caption(record["method"], record["blank"], record["target"] == "score difference")


# --- page sections -------------------------------------------------------------------------------


def show_no_models(runs_dir: Path) -> None:
    st.info(
        f"There is no trained model to use yet (no finished training run in `{runs_dir}`).\n\n"
        "Train one first: on the **Train** page of this dashboard, or in a terminal with\n\n"
        "`python -m wildvision train --arch densenet121 --regime transfer --with-background --data PATH/TO/train`\n\n"
        "where the training folder has a `captive/` sub-folder (photos of animals kept or sold) and a `wild/` one. "
        "When the run has finished, come back here."
    )


def pick_model(choices: list[catalog.ModelRecord]) -> catalog.ModelRecord:
    index = st.selectbox(
        "Model",
        range(len(choices)),
        format_func=lambda i: model_label(choices[i]),
        help="The default model shipped with wildvision, then your finished training runs, newest first.",
    )
    choice = choices[index]
    if choice.is_default:
        with st.expander("Model card: what this model is, what it learnt from and where it fails"):
            st.markdown(model_card.card_markdown(model_card.load_card()))
    if choice.demo:
        st.warning(
            "**Demo model.** It was trained on the demo proxy photos (pets in adoption listings versus wild animals), "
            "not on photos of wildlife trade. Use it to see how this page works, not to judge real posts."
        )
    trained_on = "" if choice.is_default else f"{choice.trained_on} "  # the card says what the default model learnt from
    measured = f"Measured at its own flagging line of {wording.line_text(choice.threshold)}:" if choice.threshold is not None else ""
    sentences = "\n".join(f"- {md(sentence)}" for sentence in choice.trust)
    st.caption(f"**How far to trust it.** {trained_on}{measured}\n{sentences}\n\n{wording.TRUST_CAVEAT}")
    return choice


def show_detail(loaded: LoadedModel, model_key: tuple, row: dict, method: str) -> None:
    """One photo large: the verdict, the photo and its map side by side, and a steadier map on request."""
    st.markdown(f"**{md(row['file'])}** — {md(wording.verdict_sentence(row['probability'], loaded.threshold, loaded.positive_class))}")
    if row["unusual"]:
        st.warning(f"{wording.UNLIKE_TRAINING} {wording.UNLIKE_TRAINING_HOW}")
    record, photo = row["record"], _shown_photo(row["record"])
    store = st.session_state.setdefault("predict_ig", {})
    ig = store.get((model_key, row["digest"]))
    columns = st.columns(3 if ig else 2)
    columns[0].image(photo, caption="Photo", width="content")
    columns[1].image(saliency.overlay(photo, record["heatmap"] / 255.0), caption=wording.MAP_NAMES[method], width="content")
    if ig:
        columns[2].image(saliency.overlay(photo, ig["heatmap"] / 255.0), caption=wording.MAP_NAMES["integrated_gradients"], width="content")
    captions = [map_caption(record)] + ([map_caption(ig)] if ig else [])
    if not record["blank"]:
        captions.append(wording.below_line_note(row["probability"], loaded.threshold))
    st.caption(" ".join(caption for caption in captions if caption))
    steadier = wording.MAP_NAMES["integrated_gradients"]
    if not ig and st.button(
        "Make a steadier map of this photo (takes longer)",
        key=f"ig-{row['digest']}",
        help=wording.MAP_DESCRIPTIONS["integrated_gradients"],
    ):
        bar = st.progress(0.0, text=f"{steadier}: starting…")
        (examined,) = saliency.examine(
            loaded,
            [row["path"]],
            "integrated_gradients",
            DISPLAY_MAX,
            progress=lambda fraction: bar.progress(min(max(fraction, 0.0), 1.0), text=f"{steadier}: {fraction:.0%}"),
        )
        store[(model_key, row["digest"])] = _record(examined.explanation)
        st.rerun()  # show it beside the other map, and drop the button


def predictions_csv(rows: list[dict], threshold: float) -> bytes:
    """The table as a CSV file: scores rounded to CSV_DECIMALS (no float noise), and the line that labelled them; every
    cell made safe for a spreadsheet (spreadsheet.frame_csv: an upload named @SUM(1+1).jpg is not a formula)."""
    frame = pd.DataFrame(rows)[["file", "probability", "label", "unusual", "problem"]]
    frame["unusual"] = frame["unusual"].map({True: "unlike the training photos", False: ""})
    frame["probability"] = frame["probability"].astype(float).round(CSV_DECIMALS)
    frame.insert(2, "flagging_line", round(threshold, CSV_DECIMALS))
    return frame_csv(frame).encode("utf-8")


def show_table(loaded: LoadedModel, rows: list[dict]) -> None:
    """One row per file; scores carry the verdict's own decimals ("%g"), so a row never contradicts its answer.

    A photo's caution and a file's problem share one note column wide enough for either (a photo that was read has
    no problem, one that was not has no caution): two narrow columns cut both off. A problem's note is its summary;
    the full reason is in the list of problems above the table.
    """
    shown = pd.DataFrame(rows)[["thumbnail", "file", "flagged", "score", "note"]]
    st.dataframe(
        shown,
        hide_index=True,
        row_height=48,
        column_config={
            "thumbnail": st.column_config.ImageColumn("Photo", width="small"),
            "file": st.column_config.TextColumn("File"),
            "flagged": st.column_config.TextColumn("Model's answer"),
            "score": st.column_config.ProgressColumn(
                f"Score for {wording.positive_words(loaded.positive_class)}",
                min_value=0,
                max_value=100,
                format="%g%%",
            ),
            "note": st.column_config.TextColumn(
                "Note",
                width=NOTE_WIDTH,
                help=f"{wording.UNLIKE_TRAINING_SHORT}: {wording.UNLIKE_TRAINING_HOW} For a file that could not be read, why; "
                "the full reason is in the list above the table.",
            ),
        },
    )
    csv = predictions_csv(rows, loaded.threshold)
    st.download_button("Download the table (CSV)", csv, file_name="wildvision-predictions.csv", mime="text/csv", on_click="ignore")


def show_grid(readable: list[dict], method: str) -> None:
    pages = (len(readable) + GRID_PAGE - 1) // GRID_PAGE
    page = 1
    if pages > 1:
        page = st.selectbox(
            "Photos", range(1, pages + 1), format_func=lambda p: f"{(p - 1) * GRID_PAGE + 1}–{min(p * GRID_PAGE, len(readable))} of {len(readable)}"
        )
    shown = readable[(page - 1) * GRID_PAGE : page * GRID_PAGE]
    for index, row in enumerate(shown):
        if index % GRID_COLUMNS == 0:
            columns = st.columns(GRID_COLUMNS)  # a new row, so photos of different shapes stay in line
        record = row["record"]
        with columns[index % GRID_COLUMNS]:
            st.image(
                saliency.overlay(_shown_photo(record), record["heatmap"] / 255.0),
                caption=f"{md(row['file'])}: {row['answer']}" + (f" ({wording.UNLIKE_TRAINING_SHORT.lower()})" if row["unusual"] else ""),
                width="content",
            )
    st.caption(f"{wording.MAP_NAMES[method]}: {wording.MAP_READINGS[method]}.")


def show_problems(lines: list[str]) -> None:
    """Everything skipped or unreadable in one box, one line per file or group of files."""
    if lines:
        st.warning("Some files were not used:\n" + "\n".join(f"- {md(line)}" for line in lines))


def show_results(loaded: LoadedModel, model_key: tuple, batch, method: str) -> None:
    paths = tuple(image.path for image in batch.images)
    with st.spinner(f"Scoring {len(paths)} photo{'s' if len(paths) != 1 else ''}…"):
        records = _examined(model_key, tuple(image.digest for image in batch.images), method, loaded, paths)
    rows = []
    for image, record in zip(batch.images, records):
        probability, error = record["probability"], record["error"]
        readable = error is None
        rows.append(
            {
                "file": wording.plain_name(image.name),  # one plain line; Markdown only ever gets it through md()
                "path": image.path,
                "digest": image.digest,
                "record": record,
                "probability": probability,
                "label": loaded.label_for(probability) if readable else None,  # at the line chosen now
                "problem": wording.problem_text(error) if not readable else "",
                "score": wording.shown_percents(probability, loaded.threshold)[0] if readable else None,
                "flagged": wording.flag_word(probability, loaded.threshold) if readable else "Could not be read",
                "answer": wording.short_verdict(probability, loaded.threshold) if readable else "could not be read",
                "thumbnail": record["thumbnail"] if len(batch.images) > 1 else None,
                "unusual": readable and record["unusual"],
                "note": (wording.UNLIKE_TRAINING_SHORT if record["unusual"] else "") if readable else _sentence_case(wording.problem_summary(error)),
            }
        )
    unreadable = [f"{row['file']}: {row['problem']}" for row in rows if row["problem"]]
    show_problems(list(batch.notes) + unreadable)
    readable = [row for row in rows if row["probability"] is not None]
    positive = wording.positive_words(loaded.positive_class)
    if len(rows) > 1:
        flagged = sum(row["label"] == loaded.positive_class for row in readable)
        headline = f"{len(readable)} photo{'s' if len(readable) != 1 else ''} scored: {flagged} flagged as {positive}"
        st.subheader(headline + (f" ({len(unreadable)} could not be read)" if unreadable else ""))
        show_table(loaded, rows)
    if not readable:
        return
    st.caption(
        f"A score is the model's score for {positive}, from 0% to 100%. A photo is flagged when its score is at or above "
        f"the flagging line, now {wording.line_text(loaded.threshold)}. A map shows which parts of the photo the score "
        "depends on most: the paper found good models look at cages, hands and rooms as well as at the animal."
    )
    if len(readable) > 1:
        st.subheader("Maps of what the model looked at")
        show_grid(readable, method)
        st.subheader("Look closer at one photo")
        pick = st.selectbox("Photo", range(len(readable)), format_func=lambda i: readable[i]["file"])
        chosen = readable[pick]
    else:
        chosen = readable[0]
    show_detail(loaded, model_key, chosen, method)


def page() -> None:
    st.title("Predict")
    st.write(
        "Check photos for live wild animals kept captive or offered for sale. Upload photos: the model gives each a "
        "score, and a map shows which parts of the photo led to that score."
    )
    runs_dir = runs.default_runs_dir()
    choices = catalog.usable_models(runs_dir)
    if not choices:
        show_no_models(runs_dir)
        return
    choice = pick_model(choices)
    try:
        model_key = _model_key(choice)
        loaded = _load(*model_key)
    except (CheckpointError, OSError) as error:
        st.error(f"This model cannot be used: {md(error)}. Pick another one, or train it again.")
        return
    stored = catalog.stored_scores(choice)
    if stored:
        with st.expander("Flagging line: move it, and see what it costs on photos from elsewhere"):
            loaded = replace(loaded, threshold=threshold_tradeoff(stored, loaded.threshold, model=choice.model, key="predict_threshold", as_percent=True))

    settings = load_settings()
    limits = UploadLimits.from_settings(settings)
    uploads = st.file_uploader(
        "Photos (JPEG, PNG or WebP), or a zip of photos",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        help=f"Up to {limits.max_images:,} photos, {settings.upload_max_megabytes:,} MB and {settings.upload_max_megapixels:,} megapixels in all "
        "at a time. Zips: folders inside are fine; other files are skipped.",
    )
    method = st.radio(
        "Map of what the model looked at",
        MAP_METHODS,
        format_func=lambda m: wording.MAP_NAMES[m],
        horizontal=True,
        captions=[wording.MAP_DESCRIPTIONS[m] for m in MAP_METHODS],
    )
    if not uploads:
        st.info("Upload one or more photos, or a zip of photos, to begin.")
        return
    with tempfile.TemporaryDirectory(prefix="wildvision-upload-") as folder:
        batch = unpack_uploads(((upload.name, upload.getvalue()) for upload in uploads), folder, limits)
        if not batch.images:
            show_problems(batch.notes)
            st.info("None of the uploaded files is a photo this page can read.")
            return
        show_results(loaded, model_key, batch, method)


run_page(page, "Predict")
