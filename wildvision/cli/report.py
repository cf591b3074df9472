"""`report`: a screening job's report (PDF, HTML) for the people who act on it, or the study deck (16:9 PDF and PNGs)."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from wildvision import runs
from wildvision.reports import deck, job_render
from wildvision.reports.job_report import gather


def cmd_report(args: argparse.Namespace) -> int:
    """Write the job's report in every format asked for, or the study deck."""
    if not args.out:
        raise ValueError("say where to write it: --out FILE (.pdf or .html for a job's report, .pdf for the study deck)")
    if args.study:
        if len(args.out) > 1 or Path(args.out[0]).suffix.lower() != ".pdf":
            raise ValueError("the study deck is written as one .pdf (its slides as PNGs beside it): give one --out FILE.pdf")
        runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
        records = deck.study_records(runs_dir, args.paths)
        written = deck.write_deck(deck.study_slides(records, runs_dir), args.out[0])
        print(f"wrote {written.pdf} ({len(written.pngs)} slides) and a PNG of each slide beside it")
        return 0
    if len(args.paths) != 1:
        raise ValueError("give one screening job folder (SCREEN_DIR), or --study for the study deck")
    for out in args.out:
        if Path(out).suffix.lower() not in (".pdf", ".html", ".htm"):
            raise ValueError(f"a report is written as .pdf or .html, not {Path(out).name!r}")
    report = gather(args.paths[0], made_by=args.by or getpass.getuser(), maps=not args.no_maps)
    for out in args.out:
        print(f"wrote {job_render.write(report, out)}")
    return 0


def register(sub) -> None:
    """The `report` command and its options."""
    p = sub.add_parser(
        "report",
        help="a screening job's report (PDF or HTML), or the study deck (--study: 16:9 PDF and a PNG per slide)",
        description="SCREEN_DIR --out FILE writes what the job screened, its model and line, the market estimates from its audit sample "
        "(or the precision people measured, with its caveat), the confirmed cases with photos, maps, scores and listings, who decided "
        "how many, and what the model cannot show; FILE ending .pdf or .html (give --out twice for both). --study [RUN ...] --out "
        "FILE.pdf writes the study deck: the results grid, the drop out of distribution (Figs 1, 2), the efficiency gain (Fig 3), a "
        "gallery slide per model and test set with a stored gallery, the data used and a glossary; RUN folders pick the runs (default: "
        "every completed run). It works with no runs at all.",
    )
    p.add_argument("paths", nargs="*", metavar="SCREEN_DIR | RUN", help="a completed screening job folder; with --study, run folders")
    p.add_argument("--study", action="store_true", help="write the study deck instead of a job's report")
    p.add_argument("--out", action="append", default=[], metavar="FILE", help="where to write: .pdf or .html (repeat for both)")
    p.add_argument("--by", default=None, metavar="NAME", help="who the report says made it (default: your user name)")
    p.add_argument("--no-maps", action="store_true", help="leave out the maps of where the model looked (faster)")
    p.add_argument("--runs-dir", default=None, metavar="DIR", help="with --study: the runs folder (default: $WILDVISION_RUNS_DIR or ./runs)")
    p.set_defaults(func=cmd_report)
