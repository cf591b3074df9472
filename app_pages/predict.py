"""Predict page: score uploaded photos with a trained model and show which parts of each photo drove the score.

Written for NGO staff with no machine-learning background: plain words, one line per problem, and never a
traceback. The work itself lives in wildvision (uploads.unpack_uploads, predict.predict_paths,
explain.explain_many); this file only lays it out. It is a page of Home.py's st.navigation, so it does not call
st.set_page_config.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from wildvision import explain, model_card, runs
from app_pages.widgets import md, threshold_tradeoff
from wildvision.images import ImageError, open_image
from wildvision.predict import CheckpointError, LoadedModel, load_model, predict_paths, stored_scores
from wildvision.uploads import UploadLimits, unpack_uploads

log = logging.getLogger("wildvision.pages.predict")

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "zip"]
DISPLAY_MAX = 640  # longest side, in pixels, of the photos and maps shown on the page
THUMBNAIL_MAX = 96
GRID_PAGE = 12  # saliency maps shown at once when many photos are uploaded
GRID_COLUMNS = 4
LIMITS = UploadLimits()
PAPER_OOD_NOTE = (
    "On photos from other websites expect lower: in the paper even the best models fell from an F-score above "
    "0.95 on held-back photos to 0.75–0.87 on photos from other sources"
)


# --- which models can be picked ------------------------------------------------------------------

@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker. To offer another model (e.g. a bundled default), add a ModelChoice."""

    label: str  # what the picker shows
    model: str  # what load_model takes: a checkpoint path, or "default"
    checkpoint: Path  # the file whose modification time keys the cached model
    details: str  # architecture, training regime, data set, held-back F-score
    trust: str  # how far to trust it, in plain words
    demo: bool  # trained on the demo proxy data: a demonstration, not a wildlife-trade detector


def _trained_on_demo_data(data: str) -> bool:
    """Whether a run's training folder is the demo proxy data (../shared/demo-data), or links into it."""
    if "demo-data" in data:
        return True
    folder = Path(data)
    try:
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir())[:4]:
            for image in sorted(class_dir.iterdir())[:3]:
                if "demo-data" in str(image.resolve()):
                    return True
    except OSError:
        pass
    return False


def _run_choice(run: runs.RunSummary) -> ModelChoice | None:
    """A completed run with a checkpoint as a picker entry; None for anything else."""
    checkpoint = run.path / runs.CHECKPOINT
    if run.state != "completed" or not checkpoint.is_file():
        return None
    train = run.config.get("train", {})
    dataset = "with background images" if train.get("with_background") else "without background images"
    try:
        test_sets = runs.read_json(run.path / runs.RESULTS).get("test_sets", {})
    except runs.RunError:
        test_sets = {}
    scores = {name: metrics.get("f_score") for name, metrics in test_sets.items() if isinstance(metrics, dict)}
    f_in = scores.get("test_in")
    details = f"{train.get('arch', '?')}, {train.get('regime', '?')} training, {dataset}" + (f", held-back F = {f_in:.2f}" if f_in is not None else "")
    data = str(train.get("data", "an unrecorded folder"))
    n_train = run.config.get("n_images", {}).get("train")
    trust = f"Trained on {n_train:,} photos from `{data}`. " if n_train else f"Trained on photos from `{data}`. "
    if f_in is not None:
        trust += f"On held-back photos from the same folder it scored F = {f_in:.2f} (1 is perfect). "
    other = [f"{name} F = {score:.2f}" for name, score in scores.items() if name != "test_in" and score is not None]
    trust += (f"On other test photos: {', '.join(other)}. " if other else "") + PAPER_OOD_NOTE + ". "
    trust += "Treat a score as a pointer for a person to check, never as proof."
    label = f"{run.name} — {details}"
    return ModelChoice(label, str(checkpoint), checkpoint, details, trust, _trained_on_demo_data(data))


def model_choices(runs_dir: Path) -> list[ModelChoice]:
    """Every model the page can use: the shipped default model first, then completed runs, newest first."""
    choices = [choice for run in runs.list_runs(runs_dir) if (choice := _run_choice(run)) is not None]
    if model_card.has_default_model():
        card = model_card.load_card()
        f_in = card["metrics"]["test_in"]["f_score"]
        ood = ", ".join(f"{name} F = {m['f_score']:.2f}" for name, m in card["metrics"].items() if name != "test_in")
        trust = (f"Held-back photos from its training folder: F = {f_in:.2f} (1 is perfect). On other test photos: {ood}. "
                 + PAPER_OOD_NOTE + ". Treat a score as a pointer for a person to check, never as proof.")
        choices.insert(0, ModelChoice(
            f"Default model — {card['architecture']}, shipped with wildvision", model_card.DEFAULT_NAME,
            model_card.DEFAULT_DIR / model_card.HEAD, "default model", trust, demo=True,
        ))
    return choices


@st.cache_resource(max_entries=3, show_spinner="Loading the model…")
def _load(model: str, mtime_ns: int) -> LoadedModel:
    """One model object per checkpoint version, shared by every session (mtime in the key: retrained = reloaded)."""
    return load_model(model, device="auto")


def _model_key(choice: ModelChoice) -> tuple[str, int]:
    return choice.model, choice.checkpoint.stat().st_mtime_ns


# --- cached work ---------------------------------------------------------------------------------

# What the page keeps of an Explanation (a plain dict, because st.cache_data pickles it and classes defined in
# a page script do not unpickle): "heatmap" (uint8 at display size), "method", "target", "blank".
MapRecord = dict


@st.cache_data(max_entries=64, show_spinner=False)
def _predictions(model_key: tuple, digests: tuple[str, ...], _loaded: LoadedModel, _paths: tuple[Path, ...]) -> list[tuple[float | None, str | None, str | None]]:
    """(probability, label, error reason) per image; keyed by the model and the images' contents."""
    with explain.model_lock(_loaded.model):  # a Grad-CAM hook of another session must not see this forward pass
        found = predict_paths(_loaded, list(_paths))
    return [(p.probability, p.label, p.error) for p in found]


def _display_image(path: Path) -> Image.Image:
    image = open_image(path)
    image.thumbnail((DISPLAY_MAX, DISPLAY_MAX))
    return image


@st.cache_data(max_entries=128, show_spinner=False)
def _maps(model_key: tuple, digests: tuple[str, ...], method: str, _loaded: LoadedModel, _paths: tuple[Path, ...]) -> list[MapRecord]:
    """Saliency maps of several images in one batched pass, at display size."""
    full = [open_image(path) for path in _paths]
    sizes = [_thumbnail_size(image.size) for image in full]
    explained = explain.explain_many(_loaded, full, method, sizes=sizes)
    return [_record(e) for e in explained]


def _record(explanation: explain.Explanation) -> MapRecord:
    heatmap = (explanation.heatmap * 255).round().astype(np.uint8)
    return {"heatmap": heatmap, "method": explanation.method, "target": explanation.target, "blank": explanation.blank}


def _thumbnail_size(size: tuple[int, int], largest: int = DISPLAY_MAX) -> tuple[int, int]:
    """The size PIL's thumbnail() gives, so maps line up with the displayed photos."""
    probe = Image.new("1", size)
    probe.thumbnail((largest, largest))
    return probe.size


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail_url(digest: str, _path: Path) -> str | None:
    try:
        image = open_image(_path)
    except ImageError:
        return None
    image.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- wording -------------------------------------------------------------------------------------

def positive_words(loaded: LoadedModel) -> str:
    return "captive / for sale" if loaded.positive_class == "captive" else loaded.positive_class.replace("_", " ")


def percent(probability: float) -> int:
    """Whole percent, rounded down: 49.7% shows as 49%, never as a '50%' that the threshold then calls 'not'."""
    return math.floor(probability * 100 + 1e-9)


def verdict(loaded: LoadedModel, probability: float, label: str) -> str:
    """e.g. 'Likely captive / for sale (87%)'; the percentage is always the positive-class score."""
    words = positive_words(loaded)
    if label == loaded.positive_class:
        return f"Likely {words} ({percent(probability)}%)"
    return f"Probably not {words} ({percent(probability)}%)"


def map_caption(record: MapRecord) -> str:
    if record["blank"]:
        return "No part of this photo changed the model's score, so the map is dark everywhere."
    name = explain.METHODS[record["method"]].split(" (")[0]
    text = f"{name}: brighter = pixels that most changed the model's answer."
    if record["target"] == "score difference":
        text += " (Made from the difference between the model's two scores: its 'captive' score is at its floor for this photo.)"
    return text


# --- page sections -------------------------------------------------------------------------------

def show_no_models(runs_dir: Path) -> None:
    st.info(
        f"There is no trained model to use yet (no finished training run in `{runs_dir}`).\n\n"
        "Train one first: on the **Train** page of this dashboard, or in a terminal with\n\n"
        "`python -m wildvision train --arch densenet121 --regime transfer --with-background --data PATH/TO/train`\n\n"
        "where the training folder has a `captive/` sub-folder (photos of animals kept or sold) and a `wild/` one. "
        "When the run has finished, come back here."
    )


def pick_model(choices: list[ModelChoice]) -> ModelChoice:
    index = st.selectbox(
        "Model", range(len(choices)), format_func=lambda i: choices[i].label,
        help="The default model shipped with wildvision, then your finished training runs, newest first.",
    )
    choice = choices[index]
    if choice.model == model_card.DEFAULT_NAME:
        with st.expander("Model card: what this model is, what it learnt from and where it fails"):
            st.markdown(model_card.card_markdown(model_card.load_card()))
    if choice.demo:
        st.warning(
            "**Demo model.** It was trained on the demo proxy photos (pets in adoption listings versus wild animals), "
            "not on photos of wildlife trade. Use it to see how this page works, not to judge real posts."
        )
    st.caption(f"**How far to trust it.** {choice.trust}")
    return choice


def show_detail(loaded: LoadedModel, model_key: tuple, name: str, path: Path, digest: str, probability: float, label: str, method: str) -> None:
    """One photo large: the verdict, the photo and its map side by side, and Integrated Gradients on request."""
    st.markdown(f"**{md(name)}** — {verdict(loaded, probability, label)}")
    record = _maps(model_key, (digest,), method, loaded, (path,))[0]
    photo = _display_image(path)
    store = st.session_state.setdefault("predict_ig", {})
    ig = store.get((model_key, digest))
    columns = st.columns(3 if ig else 2)
    columns[0].image(photo, caption="Photo", width="content")
    columns[1].image(explain.overlay(photo, record["heatmap"] / 255.0), caption=explain.METHODS[method].split(" (")[0], width="content")
    if ig:
        columns[2].image(explain.overlay(photo, ig["heatmap"] / 255.0), caption="Integrated Gradients", width="content")
    st.caption(map_caption(record) + ("" if not ig or ig["blank"] else " Integrated Gradients: the same reading, averaged over many steps."))
    if not ig and st.button(
        "Compute Integrated Gradients for this photo (a steadier map; takes longer)", key=f"ig-{digest}",
        help="Averages the model's gradients over many versions of the photo, from black to full colour.",
    ):
        bar = st.progress(0.0, text="Integrated Gradients: starting…")
        explained = explain.explain(
            loaded, open_image(path), "integrated_gradients", size=photo.size,
            progress=lambda fraction: bar.progress(min(max(fraction, 0.0), 1.0), text=f"Integrated Gradients: {fraction:.0%}"),
        )
        store[(model_key, digest)] = _record(explained)
        st.rerun()  # show it beside the other map, and drop the button


def show_table(loaded: LoadedModel, rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    shown = frame[["thumbnail", "file", "verdict", "score", "error"]].fillna({"error": ""})
    st.dataframe(
        shown,
        hide_index=True,
        row_height=48,
        column_config={
            "thumbnail": st.column_config.ImageColumn("Photo", width="small"),
            "file": st.column_config.TextColumn("File"),
            "verdict": st.column_config.TextColumn("Model's answer"),
            "score": st.column_config.ProgressColumn(
                f"Score for {positive_words(loaded)}", min_value=0, max_value=100, format="%d%%",
            ),
            "error": st.column_config.TextColumn("Problem"),
        },
    )
    csv = frame[["file", "probability", "label", "error"]].to_csv(index=False).encode("utf-8")
    st.download_button("Download the table (CSV)", csv, file_name="wildvision-predictions.csv", mime="text/csv")


def show_grid(loaded: LoadedModel, model_key: tuple, readable: list[dict], method: str) -> None:
    pages = (len(readable) + GRID_PAGE - 1) // GRID_PAGE
    page = 1
    if pages > 1:
        page = st.selectbox("Photos", range(1, pages + 1), format_func=lambda p: f"{(p - 1) * GRID_PAGE + 1}–{min(p * GRID_PAGE, len(readable))} of {len(readable)}")
    shown = readable[(page - 1) * GRID_PAGE: page * GRID_PAGE]
    with st.spinner("Making saliency maps…"):
        records = _maps(model_key, tuple(r["digest"] for r in shown), method, loaded, tuple(r["path"] for r in shown))
    for index, (row, record) in enumerate(zip(shown, records)):
        if index % GRID_COLUMNS == 0:
            columns = st.columns(GRID_COLUMNS)  # a new row, so photos of different shapes stay in line
        with columns[index % GRID_COLUMNS]:
            st.image(explain.overlay(_display_image(row["path"]), record["heatmap"] / 255.0), caption=f"{row['file']}: {row['verdict']}", width="content")
    st.caption("Brighter = pixels that most changed the model's answer.")


def show_problems(lines: list[str]) -> None:
    """Everything skipped or unreadable in one box, one line per file or group of files."""
    if lines:
        st.warning("Some files were not used:\n" + "\n".join(f"- {md(line)}" for line in lines))


def show_results(loaded: LoadedModel, model_key: tuple, batch, method: str) -> None:
    paths = tuple(image.path for image in batch.images)
    with st.spinner(f"Scoring {len(paths)} photo{'s' if len(paths) != 1 else ''}…"):
        predictions = _predictions(model_key, tuple(image.digest for image in batch.images), loaded, paths)
    notes = list(batch.notes)
    rows = []
    for image, (probability, _, error) in zip(batch.images, predictions):
        label = loaded.label_for(probability) if probability is not None else None  # at the threshold chosen now
        rows.append({
            "file": image.name, "path": image.path, "digest": image.digest,
            "probability": probability, "label": label, "error": error,
            "score": percent(probability) if probability is not None else None,
            "verdict": verdict(loaded, probability, label) if error is None else "could not be read",
            "thumbnail": _thumbnail_url(image.digest, image.path) if len(batch.images) > 1 else None,
        })
    unreadable = [f"{row['file']}: {row['error']}" for row in rows if row["error"] is not None]
    show_problems(notes + unreadable)
    readable = [row for row in rows if row["error"] is None]
    if len(rows) > 1:
        flagged = sum(row["label"] == loaded.positive_class for row in readable)
        headline = f"{len(readable)} photo{'s' if len(readable) != 1 else ''} scored: {flagged} likely {positive_words(loaded)}"
        st.subheader(headline + (f" ({len(unreadable)} could not be read)" if unreadable else ""))
        show_table(loaded, rows)
    if not readable:
        return
    st.caption(
        f"The percentage is the model's score for {positive_words(loaded)}; at {loaded.threshold:.0%} or more it says 'likely'. "
        "A saliency map shows which parts of the photo the model's score depends on most — the paper found good models "
        "look at cages, hands and rooms as well as at the animal."
    )
    if len(readable) > 1:
        st.subheader("Saliency maps")
        show_grid(loaded, model_key, readable, method)
        st.subheader("Look closer at one photo")
        pick = st.selectbox("Photo", range(len(readable)), format_func=lambda i: readable[i]["file"])
        chosen = readable[pick]
    else:
        chosen = readable[0]
    show_detail(loaded, model_key, chosen["file"], chosen["path"], chosen["digest"], chosen["probability"], chosen["label"], method)


def page() -> None:
    st.title("Predict")
    st.write(
        "Check photos for live wild animals kept captive or offered for sale. Upload photos: the model gives each a "
        "score, and a saliency map shows which parts of the photo led to that score."
    )
    runs_dir = runs.default_runs_dir()
    choices = model_choices(runs_dir)
    if not choices:
        show_no_models(runs_dir)
        return
    choice = pick_model(choices)
    try:
        model_key = _model_key(choice)
        loaded = _load(*model_key)
    except (CheckpointError, OSError) as error:
        st.error(f"This model cannot be used: {error}. Pick another one, or train it again.")
        return
    stored = stored_scores(choice.model, runs_dir)
    if stored:
        with st.expander("Decision threshold, and what it costs on photos from elsewhere"):
            loaded = replace(loaded, threshold=threshold_tradeoff(stored[1], loaded.threshold, model=choice.model, key="predict_threshold", as_percent=True))

    uploads = st.file_uploader(
        "Photos (JPEG, PNG or WebP), or a zip of photos", type=UPLOAD_TYPES, accept_multiple_files=True,
        help=f"Up to {LIMITS.max_images} photos at a time. Zips: folders inside are fine; other files are skipped.",
    )
    method = st.radio(
        "Saliency map", explain.FAST_METHODS, format_func=lambda m: explain.METHODS[m], horizontal=True,
        help="Saliency is the method used in the paper. Grad-CAM marks coarser regions and is often easier to read.",
    )
    if not uploads:
        st.info("Upload one or more photos, or a zip of photos, to begin.")
        return
    with tempfile.TemporaryDirectory(prefix="wildvision-upload-") as folder:
        batch = unpack_uploads(((upload.name, upload.getvalue()) for upload in uploads), folder, LIMITS)
        if not batch.images:
            show_problems(batch.notes)
            st.info("None of the uploaded files is a photo this page can read.")
            return
        show_results(loaded, model_key, batch, method)


try:
    page()
except Exception as error:  # the last line of defence: a person sees one line, the log keeps the traceback
    log.exception("Predict page failed")
    st.error(
        f"Something went wrong on this page ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}). "
        "Try again, or with other photos; if it keeps happening, tell whoever runs this dashboard (details are in its log)."
    )
