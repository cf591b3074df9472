"""A screening job's report (job_report.JobReport) as one self-contained HTML file and as a PDF.

The HTML is for sharing by link: a Jinja2 template with autoescaping (a file name, a note or a listing's title is
text, never markup), pictures inlined, and a content security policy that lets it load nothing from anywhere. The
PDF is for printing and attaching: ReportLab's page layout (paragraphs and tables that break across pages), A4.
Both lay out the same record, so they say the same numbers.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from xml.sax.saxutils import escape

import jinja2
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Image, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from wildvision import runs
from wildvision.reports.job_report import JobReport

TEMPLATE = Path(__file__).with_name("job_report.html")
PICTURE_CM = 4.2


def html(report: JobReport) -> str:
    """The report as one HTML page that needs nothing else (its pictures are inside it)."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return environment.from_string(TEMPLATE.read_text(encoding="utf-8")).render(r=report)


def _p(text: str, style) -> Paragraph:
    return Paragraph(escape(str(text)), style)  # Paragraph reads a little markup: outside text is escaped first


def _picture(data: bytes | None, missing: str, style):
    if not data:
        return _p(missing or "could not be read", style)
    picture = Image(io.BytesIO(data))
    scale = PICTURE_CM * cm / max(picture.imageWidth, picture.imageHeight)
    picture.drawWidth, picture.drawHeight = picture.imageWidth * scale, picture.imageHeight * scale
    return picture


def _table(rows: list[list], widths: list[float], numbers_from: int | None = None) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    style = [
        ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTSIZE", (0, 0), (-1, -1), 9),
    ]
    if numbers_from is not None:
        style.append(("ALIGN", (numbers_from, 1), (-1, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table


def pdf_bytes(report: JobReport) -> bytes:
    """The report as an A4 PDF."""
    styles = getSampleStyleSheet()
    body, small, heading = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10), styles["Heading2"]
    story = [
        _p(f"Screening report: {report.job}", styles["Title"]),
        _p(f"Made {report.made_at}{' by ' + report.made_by if report.made_by else ''} with wildvision.", small),
        _p("What was screened", heading),
    ]
    counted = [
        ("Files", report.counts["files"], "every file listed, readable or not"),
        ("Distinct photos", report.counts["distinct_photos"], "readable files, copies of one photo counted once"),
        ("Distinct photos flagged", report.counts["flagged_photos"], "scored at or above the line"),
        ("Distinct photos decided", report.counts["decided_photos"], "checked by a person"),
        ("Files that could not be read", report.counts["unreadable_files"], ""),
    ]
    story.append(_table([["", "Count", ""], *[[_p(a, body), f"{b:,}", _p(c, small)] for a, b, c in counted]], [5.5 * cm, 2.5 * cm, 8 * cm], 1))
    story += [_p("Sources: " + ", ".join(report.sources), body)]
    if report.listings:
        story.append(_p(f"Listings: {report.listings}.", body))
    story += [_p(f"Model: {report.model}", body), _p(report.line, body), _p(report.market_title, heading)]
    story += [_p(sentence, body) for sentence in report.market]
    if report.market_table:
        rows = [["Measure", "Estimate", "95% interval"], *[[_p(m, body), v, i] for m, v, i in report.market_table]]
        story.append(_table(rows, [8 * cm, 3 * cm, 5 * cm], 1))
    story += [
        _p("Confirmed cases", heading),
        _p(
            f"People decided {report.confirmed_photos:,} distinct photos {report.positive_words.lower()} ({report.confirmed_files:,} files with their copies).",
            body,
        ),
        *[_p(note, small) for note in report.notes],
    ]
    if report.cases:
        rows = [["#", "Photo", "Where the model looked", "Details"]]
        for number, case in enumerate(report.cases, 1):
            details = [f"{case.name}", f"Score {case.score}" + (f" · {case.copies} files of this photo" if case.copies > 1 else ""), f"Decided {case.decided}"]
            details += [f"Note: {case.note}"] * bool(case.note) + [f"Photo taken {case.taken}"] * bool(case.taken)
            details += [f"Listing: {case.listing}"] * bool(case.listing) + [case.listing_url] * bool(case.listing_url)
            cell = [_p(line, small) for line in details]
            rows.append([str(number), _picture(case.photo, "", small), _picture(case.map, case.map_problem, small), cell])
        story.append(_table(rows, [0.8 * cm, 4.6 * cm, 4.6 * cm, 7 * cm]))
    story.append(_p("Who decided", heading))
    if report.deciders:
        header = ["Person", "Distinct photos decided", report.positive_words, report.negative_words, "Unsure"]
        rows = [[_p(h, small) for h in header], *[[_p(who, small), *[f"{n:,}" for n in counts]] for who, *counts in report.deciders]]
        story.append(_table(rows, [6 * cm, 3 * cm, 2.6 * cm, 2.6 * cm, 2 * cm], 1))
    else:
        story.append(_p("Nobody has decided any photo yet.", body))
    story += [PageBreak(), _p("What the model can and cannot show", heading)]  # a page of its own, to hand over with any extract
    story += [item for limit in report.limits for item in (_p(limit, body), Spacer(1, 2))]
    buffer = io.BytesIO()
    document = SimpleDocTemplate(buffer, pagesize=A4, title=f"Screening report: {report.job}", author="wildvision", leftMargin=2 * cm, rightMargin=2 * cm)

    def footer(canvas, doc) -> None:  # every page says what it is part of, for a page printed or forwarded on its own
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.grey)
        canvas.drawString(2 * cm, 1.2 * cm, f"Screening report: {report.job} · made {report.made_at} · page {doc.page}")

    document.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def write(report: JobReport, out: str | Path) -> Path:
    """The report into `out`, as HTML for a name ending .html or .htm and as PDF for one ending .pdf (atomically)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".html", ".htm"):
        runs.write_atomic(out, lambda tmp: tmp.write_text(html(report), encoding="utf-8"))
    elif suffix == ".pdf":
        runs.write_atomic(out, lambda tmp: tmp.write_bytes(pdf_bytes(report)))
    else:
        raise ValueError(f"a report is written as .pdf or .html, not {out.name!r}")
    return out
