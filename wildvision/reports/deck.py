"""The study deck: the paper's figures and own runs as 16:9 slides someone can present, as one PDF and one PNG each.

Slides follow the paper: the results grid, the drop out of distribution with and without background photos (Fig 1)
and by training regime (Fig 2), the efficiency gain over SqueezeNet (Fig 3), a gallery page per chosen model and
test set, the data used and a glossary. Each title states what the slide shows in words, worked out from the
numbers it plots, so a title never claims what its chart does not show. It works with no runs at all (the paper's
numbers and the default model); own runs are drawn beside the paper's rows, always named as runs, and runs on the
demo data are called a proxy on the slide that lists the data.
"""

from __future__ import annotations

import glob
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from wildvision import catalog, paper, runs
from wildvision.analysis.efficiency import EfficiencyUnavailable, efficiency_points, efficiency_table
from wildvision.analysis.export import format_gain, format_value
from wildvision.analysis.generalisation import figure_data, generalisation_drop, regime_comparison_models
from wildvision.analysis.grid import results_grid
from wildvision.analysis.tidy import METRIC_LABELS, PAPER, PAPER_DATA, RUN, combined_results, dataset_order, short_run_name
from wildvision.explain import gallery_jobs
from wildvision.reports import slides
from wildvision.screening import export_requests

DECKS = "reports"  # in the runs folder: the decks made from the dashboard, their slides and logs
GRID_ROWS = 26  # rows of the results grid a slide holds, still readable at the back of a room
GAIN_TEST_SET = "test_out_pet"  # as the Efficiency page: only the out-of-distribution sets reproduce the paper's Fig 3
PREFERRED_METHODS = ("saliency", "gradcam", "smoothgrad", "integrated_gradients")  # the paper's maps first

GLOSSARY = (
    (
        "F-score (weighted)",
        "How often a model is right, balancing false alarms and misses; from 0 to 1, higher is better. Weighted: averaged over both classes by their size, as in the paper.",
    ),
    ("positive", "A photo of a live wild animal in captivity or for sale: what the model flags."),
    ("test_in", "Photos held out of the training data: like the training photos (in distribution)."),
    ("test_out_pet", "Photos from elsewhere than the training data, with pets among them (out of distribution)."),
    ("test_out_nopet", "Photos from elsewhere than the training data, without pets (out of distribution)."),
    ("out of distribution", "Photos unlike those a model learnt from: how it will do on a new market."),
    ("bg / no_bg", "Trained with background photos (people, landscapes, objects without animals) or without them."),
    ("transfer", "An ImageNet model whose last layer alone is trained on these photos."),
    ("scratch", "A model trained from random weights on these photos only."),
    ("combi", "Transfer first, then every layer fine-tuned."),
    ("efficiency gain", "F-score gained per extra parameter over SqueezeNet, the smallest model: does a bigger model pay for its size?"),
    ("saliency map", "Where in the photo the model's score came from. It shows where the model looked, not proof of what the photo shows."),
)


@dataclass(frozen=True)
class Deck:
    """A written deck: the PDF and one PNG per slide (1920 x 1080), in slide order."""

    pdf: Path
    pngs: tuple[Path, ...]


def _mean(values: pd.Series) -> float:
    return float(values.mean())


def _own_runs_words(rows: pd.DataFrame) -> str:
    return " Hatched bars are own runs (named 'run ...'), not the paper's numbers." if (rows["origin"] == RUN).any() else ""


def grid_slides(frame: pd.DataFrame) -> list[Figure]:
    """The F-score grid, ``GRID_ROWS`` rows a slide; its title compares the spread in and out of distribution."""
    grid = results_grid(frame, "f_score")
    index = grid.index.to_frame()
    transfer = grid[((index["origin"] == PAPER) & (index["regime"] == "transfer")).to_numpy()]
    inside = transfer.xs("test_in", axis=1, level="test_set").stack().dropna()
    outside = transfer.drop(columns="test_in", level="test_set").stack([0, 1]).dropna()
    title = (
        f"In distribution the paper's transfer models score alike (F {inside.min():.2f} to {inside.max():.2f}); "
        f"out of distribution they fall to {outside.min():.2f} to {outside.max():.2f}"
    )
    caption = grid_caption(grid, METRIC_LABELS["f_score"])
    parts = [grid.iloc[start : start + GRID_ROWS] for start in range(0, len(grid), GRID_ROWS)]
    return [slides.grid_slide(part, title if len(parts) == 1 else f"{title} ({n} of {len(parts)})", caption) for n, part in enumerate(parts, 1)]


def grid_caption(table: pd.DataFrame, metric_words: str, baseline: str | None = None) -> str:
    """The caption of a results grid drawn as a chart: what the cells are, where the paper's come from, and that own
    runs are not the paper's; with `baseline`, that each cell is a difference to that row."""
    runs_shown = int((table.index.get_level_values("origin") == RUN).sum())
    words = (
        f"{metric_words} of each architecture and training regime (rows) by training data and test set (columns); darker is higher. "
        "Paper rows: Tables S1-S3 of Kulkarni & Di Minin (2022)."
    )
    if baseline:
        words = f"{metric_words}: each cell minus the row {baseline} in its column; blue above it, red below. Paper rows: Tables S1-S3 of Kulkarni & Di Minin (2022)."
    if runs_shown:
        own = "1 row marked 'run' is an own run" if runs_shown == 1 else f"{runs_shown} rows marked 'run' are own runs"
        words += f" {own}, measured on its own data (runs on the demo data are a proxy), not the paper's."
    return words


def background_slide(frame: pd.DataFrame) -> Figure:
    """Fig 1: transfer models trained with and without background photos, on each test set."""
    drops = generalisation_drop(frame[(frame["origin"] == PAPER) & (frame["regime"] == "transfer")])
    drop_columns = [c for c in drops.columns if c.startswith("drop_")]
    mean_drop = {d: _mean(drops.loc[drops["dataset"] == d, drop_columns].stack()) for d in ("bg", "no_bg")}
    keeps = mean_drop["bg"] < mean_drop["no_bg"]
    title = (
        "Adding background photos keeps more of the score out of distribution"
        if keeps
        else "Adding background photos does not keep more of the score out of distribution"
    )
    rows = figure_data(frame, metrics=["f_score"], regimes=["transfer"])
    names = {"bg": "with background photos (bg)", "no_bg": "without background photos (no_bg)"}
    panels = [(names.get(d, d), rows[rows["dataset"] == d]) for d in dataset_order(rows["dataset"])]
    caption = (
        f"F-score of each transfer model on each test set (paper: Tables S1-S3; Fig 1). Out of distribution the paper's models lose "
        f"{mean_drop['bg']:.2f} of their test_in F-score on average with background photos, {mean_drop['no_bg']:.2f} without." + _own_runs_words(rows)
    )
    return slides.grouped_bars_slide(panels, title, caption, "F-score (weighted)")


def regime_slide(frame: pd.DataFrame) -> Figure:
    """Fig 2: the four architectures the paper trained in all three regimes, with background photos."""
    rows = figure_data(frame, metrics=["f_score"], datasets=["bg"], models=regime_comparison_models(frame))
    theirs = rows[rows["origin"] == PAPER]
    outside = theirs[theirs["test_set"] != "test_in"].groupby("regime")["value"].mean()
    best = outside.idxmax()
    title = f"{best.capitalize()} training keeps the most score out of distribution (mean F {outside.max():.2f})"
    reference = frame[(frame["origin"] == PAPER) & (frame["regime"] == "transfer") & (frame["dataset"] == "bg") & (frame["metric"] == "f_score")]
    lines = reference.groupby("test_set")["value"].max().to_dict()
    regimes = [r for r in paper.REGIMES if r in set(rows["regime"])] + sorted(set(rows["regime"]) - set(paper.REGIMES))
    panels = [(regime, rows[rows["regime"] == regime]) for regime in regimes]
    caption = (
        "F-score of the paper's four best transfer architectures trained by transfer, from scratch and combi (transfer, then every layer), "
        "with background photos (paper: Tables S1-S3; Fig 2). Dashed lines: the best transfer model's F-score on each test set, "
        f"in its colour. Mean out-of-distribution F: {', '.join(f'{r} {v:.2f}' for r, v in outside.items())}." + _own_runs_words(rows)
    )
    return slides.grouped_bars_slide(panels, title, caption, "F-score (weighted)", lines)


def gain_slide(frame: pd.DataFrame) -> Figure | None:
    """Fig 3: the paper's gain over SqueezeNet on test_out_pet, transfer with background photos."""
    try:
        gains = efficiency_table(frame, PAPER, GAIN_TEST_SET, "bg", "transfer")
    except EfficiencyUnavailable:
        return None
    best = gains.iloc[0]
    points = efficiency_points(frame, PAPER, GAIN_TEST_SET, "bg", "transfer")
    baseline_f = float(points.loc[points["model"] == paper.BASELINE, "f_score"].iloc[0])
    title = (
        f"{best['model']} gains the most score per extra parameter over SqueezeNet"
        if best["gain"] > 0
        else "No architecture beats SqueezeNet for the parameters it adds"
    )
    caption = (
        f"Gain = (F-score - SqueezeNet's) / (parameters - SqueezeNet's), per million parameters; paper's numbers, transfer with background "
        f"photos, {GAIN_TEST_SET} (Section 3.3, Fig 3; parameters from Table S4); SqueezeNet's F-score there is "
        f"{format_value(baseline_f)}." + (" Red: a bigger model that scores lower than SqueezeNet." if (gains["gain"] < 0).any() else "")
    )
    return slides.gain_slide(gains, title, caption, [format_gain(g) for g in gains["gain_per_million"]])


DEFAULT_MEASURES = {
    "f_score": "F-score (weighted)",
    "precision_at_threshold": "flags that are right (precision)",
    "recall_at_threshold": "captive photos found (recall)",
}


def default_model_slide(record: catalog.ModelRecord) -> Figure | None:
    """The shipped model on its own test sets (the demo proxy's): what someone checking photos with it can expect."""
    found = {name: e for name, e in record.results.items() if e.precision_at_threshold is not None and e.recall_at_threshold is not None}
    if not found:
        return None
    rows = pd.DataFrame(
        [(words, name, evaluation.metric(measure), "default") for name, evaluation in found.items() for measure, words in DEFAULT_MEASURES.items()],
        columns=["label", "test_set", "value", "origin"],
    )
    worst = min(found, key=lambda name: found[name].precision_at_threshold)
    least_found = min(e.recall_at_threshold for e in found.values())
    title = (
        f"The default model finds at least {least_found * 100:.0f} of every 100 captive photos; on {worst} only "
        f"{found[worst].precision_at_threshold * 100:.0f} of every 100 of its flags are right"
    )
    caption = (
        f"{record.description}, measured on the demo PROXY's test sets (cats and dogs in listing photos stand in for captive wild "
        "animals), not the paper's data. Precision and recall of 'captive' at the model's own line; F-score weighted as in the paper."
    )
    return slides.grouped_bars_slide([("", rows)], title, caption, "fraction (0 to 1)")


def _gallery_choice(items: Sequence[gallery_jobs.StoredGallery]) -> list[gallery_jobs.StoredGallery]:
    """One ready gallery per test set: the paper's method where there is one."""
    ready = [item for item in items if item.state == gallery_jobs.READY and item.pages]
    chosen = {}
    for item in sorted(ready, key=lambda g: PREFERRED_METHODS.index(g.method) if g.method in PREFERRED_METHODS else len(PREFERRED_METHODS)):
        chosen.setdefault(item.test_name, item)
    return list(chosen.values())


def gallery_slides(records: Sequence[catalog.ModelRecord], runs_dir: Path) -> list[Figure]:
    """A slide per chosen model and test set: the first page of its stored gallery (made on the Explanations page)."""
    made = []
    for record in records:
        model = "default" if record.is_default else record.path
        for item in _gallery_choice(gallery_jobs.stored_galleries(model, runs_dir)):
            title = f"Where {record.arch} ({'the default model' if record.is_default else 'run ' + short_run_name(record.key)}) looked on {item.test_name}"
            caption = (
                f"{item.method.replace('_', ' ').capitalize()} maps: the photo, then its map over it (bright: pushed the score towards 'captive or for sale'). "
                "Maps show where the model looked, not proof of what the photo shows."
                + (f" Page 1 of {len(item.pages)} of the gallery; the rest are in its PDF." if len(item.pages) > 1 else "")
            )
            made.append(slides.picture_slide(item.pages[0], title, caption))
    return made


def data_slide(records: Sequence[catalog.ModelRecord]) -> Figure:
    """What every number in the deck was measured on; the demo data called a proxy wherever it was used."""
    lines = [("the paper", f"{PAPER_DATA}: Tables S1-S4 as published; the deck redraws them, it did not re-measure them.")]
    for record in records:
        name = "the default model" if record.is_default else f"run {short_run_name(record.key)}"
        proxy = (
            " This is the demo PROXY (cats and dogs in listing photos stand in for captive wild animals): its numbers are not the paper's."
            if record.demo
            else ""
        )
        lines.append((name, f"{record.description}. {record.trained_on.replace('`', '')}{proxy}"))  # the catalog's words are Markdown
    return slides.text_slide(
        "The data behind these numbers", lines[:10], "Own runs are measured on their own test sets; only the paper's rows are the paper's results."
    )


def study_slides(records: Sequence[catalog.ModelRecord], runs_dir: str | Path) -> list[Figure]:
    """Every slide of the study deck for these models (the default model and chosen runs), in order."""
    frame = combined_results(records)
    made = [*grid_slides(frame), background_slide(frame), regime_slide(frame)]
    gain = gain_slide(frame)
    made += [gain] if gain is not None else []
    default = next((record for record in records if record.is_default), None)
    shipped = default_model_slide(default) if default is not None else None
    made += [shipped] if shipped is not None else []
    made += gallery_slides(records, Path(runs_dir))
    made += [slides.text_slide("The words on these slides", GLOSSARY), data_slide(records)]  # the data used closes the deck
    return made


def study_records(runs_dir: str | Path, run_dirs: Sequence[str | Path] = ()) -> list[catalog.ModelRecord]:
    """The default model and the chosen runs (folders, or names in `runs_dir`; every completed run when none is
    chosen); a run that is not there is refused by name."""
    chosen = []
    for run_dir in run_dirs:
        found = Path(run_dir) if Path(run_dir).is_dir() else Path(runs_dir) / str(run_dir)
        if not (found / runs.CONFIG).is_file():
            raise ValueError(f"{run_dir} is not a run folder, nor the name of a run in {runs_dir}")
        chosen.append(catalog.read_model(found))
    if not run_dirs:
        chosen = [record for record in catalog.list_models(runs_dir, include_default=False) if record.state == "completed"]
    default = catalog.default_model()
    return ([default] if default is not None else []) + chosen


def write_deck(figures: Sequence[Figure], out: str | Path) -> Deck:
    """The slides as one 16:9 PDF at ``out`` and a PNG each beside it (``out``'s name + "-slide-01.png" ...), written
    whole or not at all."""
    out = Path(out)
    stem = re.sub(r"\.pdf$", "", out.name, flags=re.IGNORECASE)
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": "wildvision study deck", "Creator": "wildvision"}) as pdf:
        for figure in figures:
            pdf.savefig(figure)
    pngs = []
    for number, figure in enumerate(figures, 1):
        png = out.with_name(f"{stem}-slide-{number:02d}.png")
        runs.write_atomic(png, lambda tmp, figure=figure: tmp.write_bytes(slides.png_bytes(figure)))
        pngs.append(png)
    runs.write_atomic(out, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    return Deck(out, tuple(pngs))


def decks_folder(runs_dir: str | Path) -> Path:
    """RUNS_DIR/reports/: the study decks made from the dashboard, each with its slides' PNGs and its log."""
    return Path(runs_dir) / DECKS


def start_deck(runs_dir: str | Path, owner: str = "") -> Path:
    """Make the study deck of every completed run in the background (`report --study`); returns the PDF it will write.
    Refused with jobs.TooManyJobs when `owner` is at their cap."""
    folder = decks_folder(runs_dir)
    pdf = folder / f"study-{export_requests.utc_stamp()}.pdf"
    export_requests.start_request(folder, "study deck", pdf, ["report", "--study", "--runs-dir", Path(runs_dir).resolve(), "--out", pdf.resolve()], owner=owner)
    return pdf


def deck_requests(runs_dir: str | Path) -> list[export_requests.ExportRequest]:
    """The study decks started from the dashboard, newest first: written, being made (or waiting), or failed and why."""
    return export_requests.requests_in(decks_folder(runs_dir))


def slide_pngs(pdf: Path) -> list[Path]:
    """A written deck's slides as PNGs, in order."""
    stem = re.sub(r"\.pdf$", "", pdf.name, flags=re.IGNORECASE)
    return sorted(pdf.parent.glob(f"{glob.escape(stem)}-slide-*.png"))


def slides_zip(pdf: Path) -> bytes:
    """A written deck's slide PNGs in one zip, for dropping into a presentation."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for png in slide_pngs(pdf):
            archive.write(png, png.name)
    return buffer.getvalue()
