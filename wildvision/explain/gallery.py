"""Explanation galleries like the paper's Figs 4, 5 and S3: what a model looked at in its surest right and wrong answers.

For one model and one labelled test folder (class sub-folders; the positive class is the model's
`positive_class`, every other folder is negative, as `data.scan_folder` reads it), every image is
scored and explained at a small size (`explain.examine`, SCAN_SIDE pixels: the probability and the map
come from one attribution pass, about twice a forward pass for saliency), and five groups are picked at
the model's decision threshold:

- the `top` true positives with the highest positive-class probability (Fig 4, "highest output activation"),
- the `top` true negatives with the highest negative-class probability (Fig 4),
- the `top` most confident false positives: negatives scored highest above the line (Fig 5),
- the `top` most confident false negatives: positives scored lowest below it (Fig 5),
- the `top` flagged images (above the line) whose maps lie mostly in the border
  (checks.border_share at least BORDER_THRESHOLD): the corner, watermark and caption cues of
  Fig S3, found among all the images. Only flagged ones: a shortcut matters where it raised the score,
  and the positive-class map of a photo scored near 0 is mostly noise, which lands anywhere.

The picks are explained again at display size and laid out with Pillow on 16:9 pages for a slide: titled sections
of (photo | map overlay) pairs, each captioned with file name, probability and label, whole rows to a page, a
section carried over titled again "(continued)", the gallery's title and "page i of n" on every page. Each page is
written as page-N.png (2560 x 1440, under 5 MB) and all of them as gallery.pdf; the dashboard shows and offers these
same pages, so there is no taller figure (galleries made before the pages hold gallery.png and preview.jpg instead,
which the dashboard still shows). gallery.json lists the picks, the page files and every border-dominated image. Two
checks of the maps themselves run on CHECK_IMAGES picks, taken from the sections in turn
(explain_checks): sanity.json, the weight-randomisation test (Adebayo et al.) of saliency, Grad-CAM,
Guided Backprop (the control that should fail) and the gallery's method; and faithfulness.json,
deletion-curve areas of the same methods on flagged picks against a random order. gallery.json is
written last, so its presence means the gallery is complete.

Where: for a run, `RUN/explanations/<test>-<method>/`; for the default model,
`<runs dir>/default-model-explanations/<test>-<method>/`; `--out DIR` overrides both. The dashboard
starts `python -m wildvision explain ...` in the background (wildvision.explain.gallery_jobs), so a gallery is
made once and shown at once afterwards.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from wildvision import classes, jobs, model_card, runs
from wildvision.data import DataFolderError, Sample, scan_folder
from wildvision.explain import checks
from wildvision.explain.saliency import FAST_METHODS, METHODS, Examined, examine, overlay
from wildvision.predict import LoadedModel

PDF, JSON = "gallery.pdf", "gallery.json"
PNG, PREVIEW = "gallery.png", "preview.jpg"  # the one tall figure of a gallery made before the pages: read, never written
SANITY = "sanity.json"  # checks.sanity_json of the randomisation test on CHECK_IMAGES of the picks
FAITHFULNESS = "faithfulness.json"  # checks.deletion_summary on CHECK_IMAGES of the flagged picks
CHECK_IMAGES = 8
DELETION_STEPS = 20
JOB = "job.json"  # written by gallery_jobs.start_gallery: the background process's pid and what it was asked
CONSOLE = jobs.CONSOLE
EXPLANATIONS = "explanations"  # inside a run folder
DEFAULT_FOLDER = "default-model-explanations"  # inside the runs folder, for the default model
DEFAULT_TOP = 8
GALLERY_METHODS = tuple(METHODS)  # saliency (the paper's), gradcam, smoothgrad, integrated_gradients
DEFAULT_METHOD = "saliency"
SCAN_SIDE = 112  # the maps of the whole test set are made this small: a border share needs no more
SCAN_CHUNK = 256  # images per examine call while scanning, so memory stays flat on a large test set
BORDER_WIDTH = 0.1  # the outer tenth on each side: 36% of the area, a uniform map's share
BORDER_THRESHOLD = 0.5  # a map with half its mass or more there is listed

FIGURE_WIDTH = 3840  # pages are drawn at twice a 1920-pixel screen, so text and photos stay sharp when shrunk
PAGE_HEIGHT = FIGURE_WIDTH * 9 // 16  # 16:9: 3840 x 2160
PAGE_PNG_WIDTH = 2560  # a page's PNG: sharp on a 1920-pixel projector, under 5 MB of photos (3840 wide is about 8 MB)
PAIRS_PER_ROW = 4
MARGIN = 40
TITLE_HEIGHT, SECTION_HEIGHT, CAPTION_HEIGHT = 170, 84, 86
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
    rank: int  # 1 = the surest of its section (for "border": the most border-heavy)
    border_share: float  # of its map's mass in the outer BORDER_WIDTH, from the scan (SCAN_SIDE pixels)


def sections(class_names: Sequence[str]) -> list[Section]:
    """The gallery's four sections, in order, titled with the model's class names."""
    negative, positive = classes.negative_class(class_names), classes.positive_class(class_names)
    return [
        Section("true_positive", f"Highest {positive} score, {positive}"),
        Section("true_negative", f"Highest {negative} score, {negative}"),
        Section("false_positive", f"Most confident false positives ({negative} scored {positive})"),
        Section("false_negative", f"Most confident false negatives ({positive} scored {negative})"),
        Section("border", f"Flagged, with the map mostly in the border: a corner, watermark or caption cue? (share in the outer {BORDER_WIDTH:.0%})"),
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


def scan_method(method: str) -> str:
    """The method that scores and explains the whole test set: the gallery's own when it is fast, else saliency."""
    return method if method in FAST_METHODS else "saliency"


def _scan(loaded: LoadedModel, samples: Sequence[Sample], method: str, progress) -> list[tuple[Sample, Examined]]:
    """Every readable sample with its small Examined (probability, label, map at SCAN_SIDE), chunk by chunk."""
    scanned = []
    for start in range(0, len(samples), SCAN_CHUNK):
        chunk = samples[start : start + SCAN_CHUNK]
        found = examine(loaded, [s.path for s in chunk], method, display_max=SCAN_SIDE)
        scanned += [(sample, seen) for sample, seen in zip(chunk, found) if seen.explanation is not None]
        progress(f"scored and explained {start + len(chunk)} of {len(samples)} images")
    return scanned


def pick(loaded: LoadedModel, test_dir: str | Path, top: int = DEFAULT_TOP, method: str = DEFAULT_METHOD, progress=print) -> tuple[list[Pick], dict]:
    """Score and explain every image of `test_dir` (with scan_method(method)) and choose each section's `top` images.

    Returns the picks and a summary: counts per section, unreadable files, and under "border_scan" every
    flagged image whose map has at least BORDER_THRESHOLD of its mass in the border, most border-heavy first.
    """
    positive = loaded.positive_class
    try:
        samples = scan_folder(test_dir, positive=positive, with_background=True)
    except DataFolderError as error:
        raise GalleryError(f"test folder {test_dir}: {error}") from None
    scanner = scan_method(method)
    progress(f"scoring {len(samples)} images of {test_dir} with {loaded.source}, each with a small {scanner} map")
    start = time.perf_counter()
    scanned = [
        (sample, seen.explanation.probability, round(checks.border_share(seen.explanation.heatmap, BORDER_WIDTH), 4))
        for sample, seen in _scan(loaded, samples, scanner, progress)
    ]
    unreadable = len(samples) - len(scanned)
    progress(f"scored {len(scanned)} images in {time.perf_counter() - start:.1f} s" + (f" ({unreadable} could not be read)" if unreadable else ""))
    above = [x for x in scanned if x[1] >= loaded.threshold]
    below = [x for x in scanned if x[1] < loaded.threshold]
    groups = {
        "true_positive": sorted((x for x in above if x[0].label == 1), key=lambda x: -x[1]),
        "true_negative": sorted((x for x in below if x[0].label == 0), key=lambda x: x[1]),
        "false_positive": sorted((x for x in above if x[0].label == 0), key=lambda x: -x[1]),
        "false_negative": sorted((x for x in below if x[0].label == 1), key=lambda x: x[1]),
        "border": sorted((x for x in above if x[2] >= BORDER_THRESHOLD), key=lambda x: -x[2]),
    }
    picks = [
        Pick(key, str(s.path), float(p), loaded.label_for(p), s.class_name, rank, share)
        for key, group in groups.items()
        for rank, (s, p, share) in enumerate(group[:top], 1)
    ]
    summary = {
        "images": len(samples),
        "unreadable": unreadable,
        "threshold": loaded.threshold,
        **{key: len(group) for key, group in groups.items()},
        "border_scan": {
            "method": scanner,
            "width": BORDER_WIDTH,
            "threshold": BORDER_THRESHOLD,
            "images": [{"path": str(s.path), "true_class": s.class_name, "probability": float(p), "border_share": share} for s, p, share in groups["border"]],
        },
    }
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


def _rows(section_list: Sequence[Section], picks: Sequence[Pick]) -> list[tuple[str, Section, list[Pick] | None]]:
    """The figure's rows in order: a section's title, then its rows of pairs, or a line saying it is empty."""
    rows = []
    for section in section_list:
        chosen = [p for p in picks if p.section == section.key]
        rows.append(("title", section, None))
        if not chosen:
            rows.append(("empty", section, None))
        for start in range(0, len(chosen), PAIRS_PER_ROW):
            rows.append(("pairs", section, chosen[start : start + PAIRS_PER_ROW]))
    return rows


def _row_heights(side: int) -> dict[str, int]:
    return {"title": SECTION_HEIGHT, "empty": 60, "pairs": side + CAPTION_HEIGHT + 20}


def _canvas(title: str, subtitle: str, corner: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white 16:9 page with the gallery's title and subtitle on top and `corner` ("page 1 of 3") at the right."""
    figure = Image.new("RGB", (FIGURE_WIDTH, PAGE_HEIGHT), "white")
    draw = ImageDraw.Draw(figure)
    title_font, subtitle_font = _font(56, True), _font(32)
    corner_width = int(draw.textlength(corner, font=subtitle_font)) + 40
    draw.text((MARGIN, MARGIN), _ellipsis(draw, title, title_font, FIGURE_WIDTH - 2 * MARGIN - corner_width), fill="black", font=title_font)
    draw.text((FIGURE_WIDTH - MARGIN - corner_width + 40, MARGIN + 16), corner, fill=(70, 70, 70), font=subtitle_font)
    for number, line in enumerate(textwrap.wrap(subtitle, 170)[:2]):
        draw.text((MARGIN, MARGIN + 76 + number * 40), line, fill=(70, 70, 70), font=subtitle_font)
    return figure, draw


def _draw_rows(figure: Image.Image, draw: ImageDraw.ImageDraw, rows, y: int, positive: str, examined: dict[str, Examined]) -> None:
    """Section titles and rows of (photo | map) pairs with their captions, from `y` down."""
    pair_width, side = _pair_geometry()
    section_font, caption_font = _font(44, True), _font(28)
    heights = _row_heights(side)
    for kind, section, chosen in rows:
        if kind in ("title", "continued"):
            draw.line((MARGIN, y + 8, FIGURE_WIDTH - MARGIN, y + 8), fill=(180, 180, 180), width=3)
            draw.text((MARGIN, y + 20), section.title + (" (continued)" if kind == "continued" else ""), fill="black", font=section_font)
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
                if section.key == "border":
                    second = f"border share {chosen_pick.border_share:.2f} · " + second
                draw.text((x, y + side + 8), first, fill="black", font=caption_font)
                draw.text((x, y + side + 44), _ellipsis(draw, second, caption_font, pair_width), fill=(60, 60, 60), font=caption_font)
        y += heights["title" if kind == "continued" else kind]


def _pair_geometry() -> tuple[int, int]:
    """A (photo | map) pair's width and a picture's side, in pixels."""
    pair_width = (FIGURE_WIDTH - 2 * MARGIN - (PAIRS_PER_ROW - 1) * PAIR_GAP) // PAIRS_PER_ROW
    return pair_width, (pair_width - GAP) // 2


def _positive(section_list: Sequence[Section]) -> str:
    return section_list[0].title.rsplit(", ", 1)[-1]


def _paginate(rows: list, heights: dict[str, int], room: int) -> list[list]:
    """`rows` split into pages of at most `room` pixels: whole rows only, a section's title never last on a page, and
    a section carried over to the next page titled again "(continued)"."""
    pages, page, used = [], [], 0
    for index, (kind, section, chosen) in enumerate(rows):
        need = heights[kind] + (heights[rows[index + 1][0]] if kind == "title" and index + 1 < len(rows) else 0)
        if page and used + need > room:
            pages.append(page)
            page, used = ([("continued", section, None)], heights["title"]) if kind != "title" else ([], 0)
        page.append((kind, section, chosen))
        used += heights[kind]
    return [*pages, page] if page else pages


def render_pages(title: str, subtitle: str, section_list: Sequence[Section], picks: Sequence[Pick], examined: dict[str, Examined]) -> list[Image.Image]:
    """The gallery on 16:9 pages FIGURE_WIDTH x PAGE_HEIGHT for a slide: each with the title and "page i of n", whole
    rows of pairs, a section continued from the page before titled again."""
    heights = _row_heights(_pair_geometry()[1])
    chunks = _paginate(_rows(section_list, picks), heights, PAGE_HEIGHT - MARGIN - TITLE_HEIGHT - MARGIN)
    pages = []
    for number, chunk in enumerate(chunks, 1):
        figure, draw = _canvas(title, subtitle, f"page {number} of {len(chunks)}")
        _draw_rows(figure, draw, chunk, MARGIN + TITLE_HEIGHT, _positive(section_list), examined)
        pages.append(figure)
    return pages


def page_file(number: int) -> str:
    """A 16:9 page's PNG in the gallery's folder: page-1.png, page-2.png ..."""
    return f"page-{number}.png"


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
    checks: bool = True,
) -> dict:
    """Score, pick, explain and lay out one gallery into `out_dir` (page-N.png, gallery.pdf, gallery.json); returns gallery.json's content.

    The folder then holds this gallery only: an older gallery's pages beyond the new count, tall gallery.png and
    preview.jpg are removed, so no reader offers them beside the new one.

    checks: also write sanity.json and faithfulness.json (`run_checks`; about 20 s for 8 photos on 2 idle CPU cores).
    """
    if method not in METHODS:
        raise GalleryError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if top < 1:
        raise GalleryError(f"--top must be at least 1, not {top}")
    out_dir = Path(out_dir)
    picks, summary = pick(loaded, test_dir, top, method, progress)
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
        f"{loaded.positive_class}). Labels at the model's threshold {loaded.threshold:.3f}; {summary['images']} images scored, "
        f"{summary['false_positive']} false positives, {summary['false_negative']} false negatives, "
        f"{summary['border']} flagged with the map mostly in the border."
    )
    pages = render_pages(title, subtitle, section_list, picks, examined)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"writing {len(pages)} 16:9 pages and {PDF}")
    for number, page in enumerate(pages, 1):
        small = page.resize((PAGE_PNG_WIDTH, PAGE_PNG_WIDTH * 9 // 16), Image.Resampling.LANCZOS)
        runs.write_atomic(out_dir / page_file(number), lambda tmp, small=small: small.save(tmp, "PNG", optimize=True))
    # Pillow stores each page as a JPEG inside the PDF: 16:9 pages of 19.2 x 10.8 inches, a few MB each
    runs.write_atomic(out_dir / PDF, lambda tmp: pages[0].save(tmp, "PDF", resolution=200.0, save_all=True, append_images=pages[1:], quality=90))
    page_names = [page_file(number) for number in range(1, len(pages) + 1)]
    for stale in [out_dir / PNG, out_dir / PREVIEW, *(path for path in out_dir.glob("page-*.png") if path.name not in page_names)]:
        stale.unlink(missing_ok=True)
    if checks:
        run_checks(loaded, picks, examined, method, out_dir, progress)
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
        "pages": page_names,
        "picks": [
            asdict(p)
            | {
                "section_title": titles[p.section],
                "method": method,
                "target": examined[p.path].explanation.target if examined.get(p.path) and examined[p.path].explanation else None,
                "error": examined[p.path].error if examined.get(p.path) else None,
            }
            for p in picks
        ],
    }
    runs.write_json_atomic(out_dir / JSON, stored)
    return stored


def run_checks(loaded: LoadedModel, picks: Sequence[Pick], examined: dict[str, Examined], method: str, out_dir: Path, progress=print) -> None:
    """sanity.json and faithfulness.json for checks.SANITY_METHODS and the gallery's `method`, on CHECK_IMAGES of the picks.

    The picks are taken from the sections in turn (the surest true positive, the surest true negative,
    the most confident false positive, ..., then each section's second), so the sample holds both classes
    and both kinds of error. Deletion curves take flagged picks only: the maps are of the positive score,
    and removing pixels can only show what drives a score that is there to fall.
    """
    methods = tuple(dict.fromkeys((*checks.SANITY_METHODS, method)))
    in_turn = sorted(picks, key=lambda p: p.rank)  # stable: within a rank, the sections keep their order
    photos = [(p.path, examined[p.path].image) for p in in_turn if examined.get(p.path) and examined[p.path].image is not None]
    photos = list(dict(photos).items())
    sample = photos[:CHECK_IMAGES]
    if not sample:
        return
    progress(f"sanity check: {', '.join(methods)} maps of {len(sample)} photos as the model's weights are randomised")
    start = time.perf_counter()
    results = checks.randomisation_test(loaded, [image for _, image in sample], methods)
    verdicts = ", ".join(f"{name} {'passed' if result.passed else 'failed'}" for name, result in results.items())
    progress(f"sanity check done in {time.perf_counter() - start:.1f} s: {verdicts}")
    runs.write_json_atomic(out_dir / SANITY, checks.sanity_json(results) | {"images": [path for path, _ in sample]})
    flagged_paths = {p.path for p in picks if p.probability >= loaded.threshold}
    flagged = [(path, image) for path, image in photos if path in flagged_paths][:CHECK_IMAGES]
    faithfulness = {
        "test": "deletion curves (Petsiuk et al. 2018): the positive-class probability as the most salient pixels are replaced by the mean colour, against a random order",
        "steps": DELETION_STEPS,
        "images": [path for path, _ in flagged],
        "methods": {},
    }
    if flagged:
        progress(f"deletion curves: {', '.join(methods)} on {len(flagged)} flagged photos")
        start = time.perf_counter()
        summary = checks.deletion_summary(loaded, [image for _, image in flagged], methods, DELETION_STEPS)
        faithfulness["methods"] = {
            name: {key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()} for name, row in summary.items()
        }
        progress(f"deletion curves done in {time.perf_counter() - start:.1f} s")
    runs.write_json_atomic(out_dir / FAITHFULNESS, faithfulness)


def target_folder(model: str, test_name: str, method: str, out: str | None, several: bool, runs_dir: str | Path) -> Path:
    """Where the gallery of one test set goes: into `out` (DIR/NAME-METHOD/ when `several` test sets share it), else
    beside the model: RUN/explanations/NAME-METHOD/, or under the runs folder for the default model."""
    if out:
        return Path(out) / folder_name(test_name, method) if several else Path(out)
    if model == model_card.DEFAULT_NAME:
        return gallery_folder(model_card.DEFAULT_NAME, test_name, method, runs_dir)
    if Path(model).is_file():  # a checkpoint: beside it, in its run folder's explanations/ when it sits in one
        return gallery_folder(Path(model).parent, test_name, method)
    return gallery_folder(runs.resolve_run(model, runs_dir), test_name, method)


def check_positive(loaded: LoadedModel, folder: str) -> None:
    """A clear error before the long work when a test folder lacks the model's positive class folder."""
    positive = loaded.positive_class
    if not (Path(folder) / positive).is_dir():
        found = sorted(d.name for d in Path(folder).iterdir() if d.is_dir())
        raise GalleryError(f"test folder {folder} has no {positive}/ folder, the model's positive class (found: {', '.join(found) or 'no folders'})")
