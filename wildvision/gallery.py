"""Explanation galleries like the paper's Figs 4 and 5: what a model looked at in its surest right and wrong answers.

For one model and one labelled test folder (class sub-folders; the positive class is the model's
`class_names[-1]`, every other folder is negative, as `data.scan_folder` reads it), every image is scored
(`predict.predict_paths`), and four groups are picked at the model's decision threshold:

- the `top` true positives with the highest positive-class probability (Fig 4, "highest output activation"),
- the `top` true negatives with the highest negative-class probability (Fig 4),
- the `top` most confident false positives: negatives scored highest above the line (Fig 5),
- the `top` most confident false negatives: positives scored lowest below it (Fig 5).

Only those picks are explained (`explain.examine`: probability, map and display copy from one decode,
batched), and laid out with Pillow as one figure: titled sections of (photo | map overlay) pairs, each
captioned with file name, probability and label. It is saved as gallery.png (about twice a screen's
size, for a slide) and gallery.pdf from the same image, and gallery.json lists the picks with each map's
border share (explain_checks.border_share: maps drawn to corners and captions, the paper's Fig S3).
sanity.json holds explain_checks' weight-randomisation test (Adebayo et al.) of saliency, Grad-CAM and
Guided Backprop on the first 8 picks. gallery.json is written last, so its presence means the gallery
is complete.

Where: for a run, `RUN/explanations/<test>-<method>/`; for the default model,
`<runs dir>/default-model-explanations/<test>-<method>/`; `--out DIR` overrides both. The dashboard
starts `python -m wildvision explain ...` as a background process (`start_gallery`) and shows what
`stored_galleries` finds, so a gallery is made once and shown at once afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from wildvision import explain_checks, model_card, runs
from wildvision.data import DataFolderError, scan_folder
from wildvision.explain import METHODS, Examined, examine, overlay
from wildvision.launch import named_folder_argument, spawn_module
from wildvision.predict import LoadedModel, load_model, predict_paths

PNG, PDF, JSON = "gallery.png", "gallery.pdf", "gallery.json"
SANITY = "sanity.json"  # explain_checks.sanity_json of the randomisation test on the gallery's first SANITY_IMAGES photos
SANITY_IMAGES = 8
SANITY_METHODS = ("saliency", "gradcam", "guided_backprop")  # guided backprop: the control that should fail
JOB = "job.json"  # written by start_gallery: the background process's pid and what it was asked
CONSOLE = "console.log"
EXPLANATIONS = "explanations"  # inside a run folder
DEFAULT_FOLDER = "default-model-explanations"  # inside the runs folder, for the default model
DEFAULT_TOP = 8
GALLERY_METHODS = tuple(METHODS)  # saliency (the paper's), gradcam, integrated_gradients
DEFAULT_METHOD = "saliency"

FIGURE_WIDTH = 3840  # about twice a 1920-pixel screen: sharp on a slide
PAIRS_PER_ROW = 4
MARGIN = 40
GAP = 12  # between a photo and its map
PAIR_GAP = 48  # between pairs
DISPLAY_MAX = 640  # examine's display size: enough for a cell of about 450 pixels


class GalleryError(ValueError):
    """A gallery that cannot be made from what was given (a test folder without the positive class, ...)."""


@dataclass(frozen=True)
class Section:
    key: str
    title: str


@dataclass(frozen=True)
class Pick:
    section: str  # Section.key
    path: str
    probability: float  # of the positive class
    label: str  # the model's answer at its threshold
    true_class: str  # the class folder it was filed under
    rank: int  # 1 = the surest of its section


def sections(class_names: Sequence[str]) -> list[Section]:
    """The gallery's four sections, in order, titled with the model's class names."""
    negative, positive = class_names[0], class_names[-1]
    return [
        Section("true_positive", f"Highest {positive} score, {positive}"),
        Section("true_negative", f"Highest {negative} score, {negative}"),
        Section("false_positive", f"Most confident false positives ({negative} scored {positive})"),
        Section("false_negative", f"Most confident false negatives ({positive} scored {negative})"),
    ]


def folder_name(test_name: str, method: str) -> str:
    return runs.safe_name(f"{test_name}-{method}")


def galleries_root(model: str | Path, runs_dir: str | Path | None = None) -> Path:
    """Where a model's galleries live: RUN/explanations, or the runs folder's default-model-explanations."""
    if str(model) == model_card.DEFAULT_NAME:
        return Path(runs_dir or runs.default_runs_dir()) / DEFAULT_FOLDER
    return Path(model) / EXPLANATIONS


def gallery_folder(model: str | Path, test_name: str, method: str, runs_dir: str | Path | None = None) -> Path:
    return galleries_root(model, runs_dir) / folder_name(test_name, method)


# --- choosing the images --------------------------------------------------------------------------


def pick(loaded: LoadedModel, test_dir: str | Path, top: int = DEFAULT_TOP, progress=print) -> tuple[list[Pick], dict]:
    """Score every image of `test_dir` and choose each section's `top` surest images; also a summary of the scoring."""
    positive = loaded.class_names[-1]
    try:
        samples = scan_folder(test_dir, positive=positive, with_background=True)
    except DataFolderError as error:
        raise GalleryError(f"test folder {test_dir}: {error}") from None
    progress(f"scoring {len(samples)} images of {test_dir} with {loaded.source}")
    start = time.perf_counter()
    predictions = predict_paths(loaded, [s.path for s in samples])
    scored = [(s, p) for s, p in zip(samples, predictions) if p.error is None]
    unreadable = len(samples) - len(scored)
    progress(f"scored {len(scored)} images in {time.perf_counter() - start:.1f} s" + (f" ({unreadable} could not be read)" if unreadable else ""))
    above = [(s, p) for s, p in scored if p.probability >= loaded.threshold]
    below = [(s, p) for s, p in scored if p.probability < loaded.threshold]
    groups = {
        "true_positive": sorted((x for x in above if x[0].label == 1), key=lambda x: -x[1].probability),
        "true_negative": sorted((x for x in below if x[0].label == 0), key=lambda x: x[1].probability),
        "false_positive": sorted((x for x in above if x[0].label == 0), key=lambda x: -x[1].probability),
        "false_negative": sorted((x for x in below if x[0].label == 1), key=lambda x: x[1].probability),
    }
    picks = [
        Pick(key, str(s.path), float(p.probability), p.label, s.class_name, rank) for key, group in groups.items() for rank, (s, p) in enumerate(group[:top], 1)
    ]
    summary = {"images": len(samples), "unreadable": unreadable, "threshold": loaded.threshold, **{key: len(group) for key, group in groups.items()}}
    return picks, summary


def score_text(probability: float) -> str:
    """A probability with the decimals it needs: 0.731, but 0.99996 and 0.00002 rather than 1.000 and 0.000."""
    for decimals in (3, 4, 5, 6):
        text = f"{probability:.{decimals}f}"
        if 0 < float(text) < 1:
            return text
    return f"{probability:.2e}" if probability < 0.5 else f"{probability:.6f}"


def model_argument(record) -> str | Path:
    """What start_gallery and stored_galleries take for a catalog record: "default" or its run folder."""
    return model_card.DEFAULT_NAME if record.is_default else record.path


# --- the figure -----------------------------------------------------------------------------------


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu"):
        if os.path.isfile(os.path.join(folder, name)):
            return ImageFont.truetype(os.path.join(folder, name), size)
    return ImageFont.load_default(size=size)


def _fit(image: Image.Image, side: int) -> Image.Image:
    """`image` shrunk (or enlarged) to fit a side x side square, centred on white."""
    copy = image.convert("RGB")
    scale = side / max(copy.size)
    copy = copy.resize((max(1, round(copy.width * scale)), max(1, round(copy.height * scale))), Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (side, side), "white")
    cell.paste(copy, ((side - copy.width) // 2, (side - copy.height) // 2))
    return cell


def _ellipsis(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render(title: str, subtitle: str, section_list: Sequence[Section], picks: Sequence[Pick], examined: dict[str, Examined]) -> Image.Image:
    """The gallery figure: a title, then per section its titled rows of (photo | map overlay) pairs with captions."""
    positive = section_list[0].title.rsplit(", ", 1)[-1]
    pair_width = (FIGURE_WIDTH - 2 * MARGIN - (PAIRS_PER_ROW - 1) * PAIR_GAP) // PAIRS_PER_ROW
    side = (pair_width - GAP) // 2
    title_font, subtitle_font, section_font, caption_font = _font(56, True), _font(32), _font(44, True), _font(28)
    caption_height, title_height, section_height = 86, 170, 84
    rows = []  # (section, picks in this row) or (section, None) for an empty section
    for section in section_list:
        chosen = [p for p in picks if p.section == section.key]
        rows.append(("title", section, None))
        if not chosen:
            rows.append(("empty", section, None))
        for start in range(0, len(chosen), PAIRS_PER_ROW):
            rows.append(("pairs", section, chosen[start : start + PAIRS_PER_ROW]))
    heights = {"title": section_height, "empty": 60, "pairs": side + caption_height + 20}
    height = MARGIN + title_height + sum(heights[kind] for kind, _, _ in rows) + MARGIN
    figure = Image.new("RGB", (FIGURE_WIDTH, height), "white")
    draw = ImageDraw.Draw(figure)
    draw.text((MARGIN, MARGIN), _ellipsis(draw, title, title_font, FIGURE_WIDTH - 2 * MARGIN), fill="black", font=title_font)
    for number, line in enumerate(textwrap.wrap(subtitle, 170)[:2]):
        draw.text((MARGIN, MARGIN + 76 + number * 40), line, fill=(70, 70, 70), font=subtitle_font)
    y = MARGIN + title_height
    for kind, section, chosen in rows:
        if kind == "title":
            draw.line((MARGIN, y + 8, FIGURE_WIDTH - MARGIN, y + 8), fill=(180, 180, 180), width=3)
            draw.text((MARGIN, y + 20), section.title, fill="black", font=section_font)
        elif kind == "empty":
            draw.text((MARGIN, y + 10), "none in this test set", fill=(110, 110, 110), font=caption_font)
        else:
            for column, chosen_pick in enumerate(chosen):
                x = MARGIN + column * (pair_width + PAIR_GAP)
                seen = examined.get(chosen_pick.path)
                if seen is None or seen.image is None or seen.explanation is None:
                    draw.rectangle((x, y, x + pair_width, y + side), outline=(200, 0, 0), width=3)
                    draw.text((x + 10, y + 10), f"could not be explained: {seen.error if seen else 'missing'}", fill=(200, 0, 0), font=caption_font)
                else:
                    figure.paste(_fit(seen.image, side), (x, y))
                    figure.paste(_fit(overlay(seen.image, seen.explanation.heatmap), side), (x + side + GAP, y))
                name = Path(chosen_pick.path).name
                first = _ellipsis(draw, f"{chosen_pick.rank}. {name}", caption_font, pair_width)
                second = f"{positive} score {score_text(chosen_pick.probability)} → {chosen_pick.label}  (filed under {chosen_pick.true_class})"
                draw.text((x, y + side + 8), first, fill="black", font=caption_font)
                draw.text((x, y + side + 44), _ellipsis(draw, second, caption_font, pair_width), fill=(60, 60, 60), font=caption_font)
        y += heights[kind]
    return figure


# --- making and storing a gallery -----------------------------------------------------------------


def make_gallery(
    loaded: LoadedModel,
    test_name: str,
    test_dir: str | Path,
    out_dir: str | Path,
    method: str = DEFAULT_METHOD,
    top: int = DEFAULT_TOP,
    model_name: str | None = None,
    progress=print,
    sanity: bool = True,
) -> dict:
    """Score, pick, explain and lay out one gallery into `out_dir` (gallery.png, gallery.pdf, gallery.json); returns gallery.json's content.

    sanity: also run explain_checks' weight-randomisation test on the first SANITY_IMAGES picks for SANITY_METHODS
    and write sanity.json (about 6 s for 8 photos on 2 idle CPU cores). Each pick records its map's border share.
    """
    if method not in METHODS:
        raise GalleryError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if top < 1:
        raise GalleryError(f"--top must be at least 1, not {top}")
    out_dir = Path(out_dir)
    picks, summary = pick(loaded, test_dir, top, progress)
    paths = list(dict.fromkeys(p.path for p in picks))
    progress(f"explaining {len(paths)} picked images with {method}")
    start = time.perf_counter()
    examined = {e.path: e for e in examine(loaded, paths, method, display_max=DISPLAY_MAX)} if paths else {}
    explain_s = time.perf_counter() - start
    progress(f"explained them in {explain_s:.1f} s")
    section_list = sections(loaded.class_names)
    name = model_name or loaded.source
    title = f"{name} on {test_name}: {METHODS[method].split(' (')[0]} maps"
    subtitle = (
        f"{METHODS[method]}. Each pair: the photo, then its map over it (bright = pushed the score for "
        f"{loaded.class_names[-1]}). Labels at the model's threshold {loaded.threshold:.3f}; {summary['images']} images scored, "
        f"{summary['false_positive']} false positives, {summary['false_negative']} false negatives."
    )
    figure = render(title, subtitle, section_list, picks, examined)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"writing {out_dir / PNG} and {PDF}")
    runs.write_atomic(out_dir / PNG, lambda tmp: figure.save(tmp, "PNG", optimize=False))
    runs.write_atomic(out_dir / PDF, lambda tmp: figure.save(tmp, "PDF", resolution=200.0))
    if sanity and paths:
        photos = [(path, examined[path].image) for path in paths if examined[path].image is not None][:SANITY_IMAGES]
        progress(f"sanity check: {', '.join(SANITY_METHODS)} maps of {len(photos)} photos as the model's weights are randomised")
        start = time.perf_counter()
        results = explain_checks.randomisation_test(loaded, [image for _, image in photos], SANITY_METHODS)
        verdicts = ", ".join(f"{method} {'passed' if result.passed else 'failed'}" for method, result in results.items())
        progress(f"sanity check done in {time.perf_counter() - start:.1f} s: {verdicts}")
        runs.write_json_atomic(out_dir / SANITY, explain_checks.sanity_json(results) | {"images": [path for path, _ in photos]})
    titles = {s.key: s.title for s in section_list}
    stored = {
        "model": name,
        "arch": loaded.arch,
        "test_name": test_name,
        "test_dir": str(test_dir),
        "method": method,
        "method_title": METHODS[method],
        "top": top,
        "threshold": loaded.threshold,
        "summary": summary,
        "explain_s": round(explain_s, 3),
        "created_at": runs.now(),
        "sections": [asdict(s) for s in section_list],
        "picks": [
            asdict(p)
            | {
                "section_title": titles[p.section],
                "method": method,
                "target": examined[p.path].explanation.target if examined.get(p.path) and examined[p.path].explanation else None,
                "error": examined[p.path].error if examined.get(p.path) else None,
                "border_share": _border_share(examined.get(p.path)),
            }
            for p in picks
        ],
    }
    runs.write_json_atomic(out_dir / JSON, stored)
    return stored


def _border_share(seen: Examined | None) -> float | None:
    """The share of the map's mass in the photo's outer tenth (explain_checks.border_share): corners, captions, watermarks."""
    if seen is None or seen.explanation is None:
        return None
    return round(explain_checks.border_share(seen.explanation.heatmap), 4)


# --- the command line ------------------------------------------------------------------------------


def add_explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN|default", help="a run folder, a run name under --runs-dir, a checkpoint.pt, or default (the shipped model)")
    parser.add_argument(
        "--test",
        action="append",
        type=named_folder_argument,
        required=True,
        metavar="NAME=DIR",
        help="a labelled test folder (class sub-folders); repeat for more",
    )
    parser.add_argument(
        "--method",
        choices=GALLERY_METHODS,
        default=DEFAULT_METHOD,
        help="saliency (the paper's vanilla gradient, default), gradcam or integrated_gradients (slow)",
    )
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, help=f"images per section (default: {DEFAULT_TOP})")
    parser.add_argument(
        "--out",
        help="write here instead (one --test: into DIR; several: DIR/NAME-METHOD/); default: RUN/explanations/NAME-METHOD/, "
        f"or --runs-dir/{DEFAULT_FOLDER}/NAME-METHOD/ for the default model",
    )
    parser.add_argument(
        "--no-sanity",
        action="store_true",
        help=f"skip sanity.json: the weight-randomisation check of {', '.join(SANITY_METHODS)} on the first {SANITY_IMAGES} photos (about 6 s on 2 idle CPU cores)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--runs-dir", default=str(runs.default_runs_dir()), help="folder that holds the run folders (default: $WILDVISION_RUNS_DIR, else runs)")


def _target(args: argparse.Namespace, test_name: str) -> Path:
    if args.out:
        return Path(args.out) if len(args.test) == 1 else Path(args.out) / folder_name(test_name, args.method)
    if args.model == model_card.DEFAULT_NAME:
        return gallery_folder(model_card.DEFAULT_NAME, test_name, args.method, args.runs_dir)
    if Path(args.model).is_file():  # a checkpoint: beside it, in its run folder's explanations/ when it sits in one
        return gallery_folder(Path(args.model).parent, test_name, args.method)
    return gallery_folder(runs.resolve_run(args.model, args.runs_dir), test_name, args.method)


def run_explain(args: argparse.Namespace) -> int:
    """`python -m wildvision explain`: one gallery per --test; one clear line and exit 2 on bad input."""
    try:
        if args.top < 1:
            raise GalleryError(f"--top must be at least 1, not {args.top}")
        for name, folder in args.test:
            if not Path(folder).is_dir():
                raise GalleryError(f"test folder {folder} ({name}) does not exist or is not a folder")
        targets = [_target(args, name) for name, _ in args.test]
        print(f"loading {args.model}", flush=True)
        loaded = load_model(args.model, args.runs_dir, args.device)
        for name, _ in args.test:  # check every folder before the long work
            _check_positive(loaded, dict(args.test)[name])
    except (GalleryError, runs.RunError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model_name = "default model" if args.model == model_card.DEFAULT_NAME else Path(args.model).name
    for (name, folder), target in zip(args.test, targets):
        print(f"[{name}] gallery of {args.method} maps, {args.top} per section", flush=True)
        stored = make_gallery(
            loaded,
            name,
            folder,
            target,
            args.method,
            args.top,
            model_name,
            sanity=not args.no_sanity,
            progress=lambda text, name=name: print(f"[{name}] {text}", flush=True),
        )
        print(f"[{name}] wrote {target / PNG} ({len(stored['picks'])} images)", flush=True)
    return 0


def _check_positive(loaded: LoadedModel, folder: str) -> None:
    positive = loaded.class_names[-1]
    if not (Path(folder) / positive).is_dir():
        found = sorted(d.name for d in Path(folder).iterdir() if d.is_dir())
        raise GalleryError(f"test folder {folder} has no {positive}/ folder, the model's positive class (found: {', '.join(found) or 'no folders'})")


# --- background jobs for the dashboard --------------------------------------------------------------


@dataclass(frozen=True)
class StoredGallery:
    test_name: str
    method: str
    folder: Path
    state: str  # "ready", "being made" or "failed"
    png: Path | None
    pdf: Path | None
    json: Path | None
    message: str = ""  # the last line of the background process's output, while being made or after it failed
    images: int | None = None  # pictures in the gallery, when ready
    sanity: str = ""  # the weight-randomisation check's verdicts in words (sanity.json), when it was run


def start_gallery(
    model: str | Path,
    test_name: str,
    test_dir: str | Path,
    method: str = DEFAULT_METHOD,
    top: int = DEFAULT_TOP,
    runs_dir: str | Path | None = None,
    sanity: bool = True,
) -> Path:
    """Start `python -m wildvision explain` for one test set as a detached process; returns the gallery's folder.

    model: a run folder or "default". The folder's old gallery is removed first, so a reader never shows a
    gallery made for other settings while the new one is being made.
    """
    if not Path(test_dir).is_dir():
        raise ValueError(f"no test folder {test_dir}: give a folder with a sub-folder per class")
    folder = gallery_folder(model, test_name, method, runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (JSON, PNG, PDF, SANITY, CONSOLE):
        (folder / name).unlink(missing_ok=True)
    arguments = ["explain", str(model), "--test", f"{test_name}={Path(test_dir).resolve()}", "--method", method, "--top", str(top), "--out", str(folder)]
    if runs_dir is not None:
        arguments += ["--runs-dir", str(runs_dir)]
    if not sanity:
        arguments.append("--no-sanity")
    pid = spawn_module("wildvision", arguments, folder)
    runs.write_json_atomic(folder / JOB, {"pid": pid, "started_at": runs.now(), "test_name": test_name, "method": method, "arguments": arguments})
    return folder


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _sanity_words(path: Path) -> str:
    """sanity.json's verdicts as a sentence: "saliency passed, gradcam passed, guided_backprop failed"; empty without one."""
    try:
        methods = runs.read_json(path)["methods"] if path.is_file() else {}
        return ", ".join(f"{method} {'passed' if result.get('passed') else 'failed'}" for method, result in methods.items())
    except (runs.RunError, KeyError, TypeError, AttributeError):
        return ""


def stored_galleries(model: str | Path, runs_dir: str | Path | None = None) -> list[StoredGallery]:
    """Every gallery of a model (a run folder or "default"), ready or not, by test set and method."""
    root = galleries_root(model, runs_dir)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        job, stored = {}, None
        try:
            job = runs.read_json(folder / JOB) if (folder / JOB).is_file() else {}
            stored = runs.read_json(folder / JSON) if (folder / JSON).is_file() else None
        except runs.RunError:
            pass
        test_name = (stored or job).get("test_name") or folder.name.rsplit("-", 1)[0]
        method = (stored or job).get("method") or folder.name.rsplit("-", 1)[-1]
        if stored is not None and (folder / PNG).is_file():
            pdf = folder / PDF if (folder / PDF).is_file() else None
            images = len(stored.get("picks", []))
            found.append(
                StoredGallery(test_name, method, folder, "ready", folder / PNG, pdf, folder / JSON, images=images, sanity=_sanity_words(folder / SANITY))
            )
        elif job:
            state = "being made" if runs.process_alive(int(job.get("pid", 0) or 0)) else "failed"
            found.append(StoredGallery(test_name, method, folder, state, None, None, None, _last_line(folder / CONSOLE)))
    return found
