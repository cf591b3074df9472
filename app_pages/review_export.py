"""The Review page's exports: the confirmed cases as a CSV, an evidence pack and a training folder."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.widgets import code, md, request_lines
from wildvision import roots, shared, wording
from wildvision.screening import decisions, export, export_requests, review, training_export


def export_section(job: review.Job) -> None:
    """The confirmed cases as a CSV, an evidence pack and a training folder; the last two are made in the background."""
    st.subheader("Export")
    if not team.allowed("export"):
        return
    st.write(
        f"Confirmed cases are the photos people decided **{wording.label_words(job.positive).lower()}**. The evidence pack holds "
        "each of them as it was screened, a map of where the model looked and the list of cases; the training folder "
        "holds every decided photo, sorted by decision, ready to train a model on your own market's photos. The report puts what was screened, the market estimates and the "
        "confirmed cases on a few pages for the people who act on them."
    )
    columns = st.columns(4)
    with columns[0]:
        try:
            text, count = export.cases_csv(job.path)
        except export.NoConfirmedCases:
            st.caption("No confirmed cases yet.")
        except ValueError as error:  # damaged scores or decisions: the export would not hold what the job holds
            st.warning(f"The cases cannot be exported: {md(str(error))}")
        else:
            st.download_button(f"Confirmed cases, CSV ({count})", text.encode("utf-8"), f"{job.name}-confirmed-cases.csv", "text/csv", on_click="ignore")
    with columns[1]:
        if st.button("Make an evidence pack", disabled=not (job.path / decisions.DATABASE).is_file()):
            pack = export_requests.new_pack_path(job.path)
            start(job, "evidence pack", pack, ["--zip", pack], "The evidence pack is being made in the background; it is listed below when ready.")
    with columns[2]:
        if st.button(
            "Make a report (PDF and HTML)",
            help="What was screened, the model and its line, the market estimates, the confirmed cases with their photos and maps, "
            "who decided how many, and what the model cannot show: for the people who act on the results.",
        ):
            report(job)
    with columns[3]:
        with st.form("training-folder"):
            folder = st.text_input("New training folder (a path on this computer)", placeholder="/data/training/market-november")
            demo = shared.demo_data("train")
            include = st.text_input("Also include this training folder (optional)", value=str(demo) if demo else "")
            chosen = st.form_submit_button("Write the training folder")
        if chosen:
            training_folder(job, folder.strip(), include.strip())
    request_lines(partial(newest_exports, str(job.path)), export_line)


def newest_exports(screen_dir: str) -> list[export_requests.ExportRequest]:
    return export_requests.export_requests(screen_dir)[:6]


def export_line(request: export_requests.ExportRequest) -> None:
    """One export started here: ready (with a download for a pack), still being made, or why it failed."""
    name = code(request.output.name if request.kind in ("evidence pack", "report") else request.output)
    if request.state == "running":
        st.caption(f"{request.kind.capitalize()} {name}: {md(request.detail) if request.detail else 'being made…'}")
    elif request.state == "failed":
        st.warning(f"{request.kind.capitalize()} {name} was not made: {md(request.detail)}")
    elif request.kind == "evidence pack":
        st.download_button(
            f"Download the evidence pack {request.output.name}", request.output.read_bytes, request.output.name, "application/zip", on_click="ignore"
        )
    elif request.kind == "report":
        pdf, html = request.output, export_requests.html_beside(request.output)
        cells = st.columns(2)
        cells[0].download_button(f"Report as PDF: {pdf.name}", pdf.read_bytes, pdf.name, "application/pdf", key=f"report-pdf-{pdf.name}", on_click="ignore")
        if html.is_file():
            cells[1].download_button(f"Report as HTML: {html.name}", html.read_bytes, html.name, "text/html", key=f"report-html-{html.name}", on_click="ignore")
    else:
        overlap = " Train on it with 'Leave out test photos that copy a training photo' ticked." if "copy a test-set photo" in request.detail else ""
        st.success(f"Training folder {name}: {md(request.detail)}.{overlap}")


def report(job: review.Job) -> None:
    """The job's report, PDF and HTML, made in the background (its maps take about a second a photo)."""
    pdf = export_requests.new_report_path(job.path)
    who = team.person().identity
    arguments = ["--out", export_requests.html_beside(pdf), "--out", pdf, *(["--by", who] if who else [])]
    start(job, "report", pdf, arguments, "The report is being made in the background; it is listed below when ready.", command="report")


def training_folder(job: review.Job, folder: str, include: str) -> None:
    if not folder:
        st.error("Give the path of a new folder for the training photos.")
        return
    try:
        folder = str(roots.writable(folder))
        include = str(roots.regular(roots.readable(include))) if include else ""
    except roots.OutsideRoots as error:
        st.error(f"The training folder was not written: {md(str(error))}")
        return
    try:
        training_export.plan_training_folder(job.path, folder, [include] if include else [])
    except (ValueError, OSError) as error:
        st.error(f"The training folder was not written: {md(str(error))}")
        return
    arguments = ["--training-folder", folder, *(["--include", include] if include else [])]
    start(job, "training folder", Path(folder), arguments, f"Writing {code(folder)} in the background; it is listed below when ready.")


def start(job: review.Job, kind: str, output: Path, arguments: list, message: str, command: str = "export") -> None:
    try:
        export_requests.start_export(job.path, kind, output, arguments, owner=team.person().identity, command=command)
    except (OSError, ValueError) as error:  # ValueError: jobs.TooManyJobs
        st.error(f"The export was not started: {error}")
        return
    st.success(message)
