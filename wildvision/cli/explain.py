"""`explain`: a gallery of a model's surest right and wrong answers on test sets, from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wildvision import model_card, runs
from wildvision.cli.options import add_runs_dir
from wildvision.explain import checks, gallery
from wildvision.predict import load_model
from wildvision.training.launch import named_folder_argument


def cmd_explain(args: argparse.Namespace) -> int:
    """One gallery per --test; one clear line and exit 2 on bad input."""
    try:
        if args.top < 1:
            raise gallery.GalleryError(f"--top must be at least 1, not {args.top}")
        for name, folder in args.test:
            if not Path(folder).is_dir():
                raise gallery.GalleryError(f"test folder {folder} ({name}) does not exist or is not a folder")
        targets = [gallery.target_folder(args.model, name, args.method, args.out, len(args.test) > 1, args.runs_dir) for name, _ in args.test]
        print(f"loading {args.model}", flush=True)
        loaded = load_model(args.model, args.runs_dir, args.device)
        for name, _ in args.test:  # check every folder before the long work
            gallery.check_positive(loaded, dict(args.test)[name])
    except (gallery.GalleryError, runs.RunError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model_name = "default model" if args.model == model_card.DEFAULT_NAME else Path(args.model).name
    for (name, folder), target in zip(args.test, targets):
        print(f"[{name}] gallery of {args.method} maps, {args.top} per section", flush=True)
        stored = gallery.make_gallery(
            loaded,
            name,
            folder,
            target,
            args.method,
            args.top,
            model_name,
            checks=not args.no_checks,
            progress=lambda text, name=name: print(f"[{name}] {text}", flush=True),
        )
        print(
            f"[{name}] wrote {len(stored['pages'])} 16:9 pages ({gallery.page_file(1)} ...) and {target / gallery.PDF} ({len(stored['picks'])} images)",
            flush=True,
        )
    return 0


def register(sub) -> None:
    """The `explain` command and its options."""
    p = sub.add_parser(
        "explain",
        help="an explanation gallery of a model's surest right and wrong answers on test sets (the paper's Figs 4 and 5)",
        description="Score every image of each --test folder, pick per section the --top surest true positives, true negatives, false "
        "positives and false negatives at the model's threshold, explain only those (--method) and lay them out as "
        "16:9 pages for a slide (page-N.png, and all of them as gallery.pdf) and gallery.json (the picks), under "
        "RUN/explanations/NAME-METHOD/ or --out. Exit code 2 on bad input (unknown run, missing test folder, no positive class).",
    )
    p.add_argument("model", metavar="RUN|default", help="a run folder, a run name under --runs-dir, a checkpoint.pt, or default (the shipped model)")
    p.add_argument(
        "--test",
        action="append",
        type=named_folder_argument,
        required=True,
        metavar="NAME=DIR",
        help="a labelled test folder (class sub-folders); repeat for more",
    )
    p.add_argument(
        "--method",
        choices=gallery.GALLERY_METHODS,
        default=gallery.DEFAULT_METHOD,
        help="saliency (the paper's vanilla gradient, default), gradcam, smoothgrad or integrated_gradients (both slow)",
    )
    p.add_argument("--top", type=int, default=gallery.DEFAULT_TOP, help=f"images per section (default: {gallery.DEFAULT_TOP})")
    p.add_argument(
        "--out",
        help="write here instead (one --test: into DIR; several: DIR/NAME-METHOD/); default: RUN/explanations/NAME-METHOD/, "
        f"or --runs-dir/{gallery.DEFAULT_FOLDER}/NAME-METHOD/ for the default model",
    )
    p.add_argument(
        "--no-checks",
        action="store_true",
        help=f"skip sanity.json and faithfulness.json: the weight-randomisation test and deletion curves of {', '.join(checks.SANITY_METHODS)} "
        f"and --method on the first {gallery.CHECK_IMAGES} photos (about 20 s on 2 idle CPU cores)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add_runs_dir(p)
    p.set_defaults(func=cmd_explain)
