"""Reports on real inputs, read back as a presenter's software reads them (pdftotext, pdfinfo): a screening job's report
says the numbers the Review page shows, and the study deck's slides are 16:9 and print the Results and Efficiency
pages' numbers. Job reports need ../shared (demo photos, the shipped model); the deck works on a fresh install."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import demo_subset
from conftest import wait_until as poll
from helpers import decide_truly, pdf_page_sizes
from wildvision.analysis.export import fixed_formatter
from wildvision.analysis.tidy import short_run_name
from wildvision.reports import deck, job_render, slides
from wildvision.reports.job_report import CaseRow, JobReport
from wildvision.screening import audit, export_requests, review

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def poppler() -> None:
    """pdftotext and pdfinfo read the reports back, or a skip saying how to install them (a failure in CI)."""
    if not (shutil.which("pdftotext") and shutil.which("pdfinfo")):
        message = "needs pdftotext and pdfinfo (Debian: apt-get install --no-install-recommends poppler-utils)"
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; WILDVISION_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)


def wildvision(*arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wildvision", *map(str, arguments)], capture_output=True, text=True, timeout=600)


def pdf_text(pdf: Path, layout: bool = False, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(["pdftotext", *(["-layout"] if layout else []), *pages, str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def flat(text: str) -> str:
    """Text with every run of white space one space: a sentence wrapped over two lines reads as one."""
    return " ".join(text.split())


def plain(markdown: str) -> str:
    """What a Markdown block of the page reads as: no bold marks, no escapes."""
    return re.sub(r"\\(.)", r"\1", markdown.replace("**", ""))


# --- the screening job's report -------------------------------------------------------------------


def review_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app_pages/review.py"), default_timeout=120).run()
    at.text_input(key="reviewer").input("Ana").run()
    assert not at.exception
    return at


def top_photos(job: Path, count: int) -> list[str]:
    items = review.read_items(job)
    return list(items.sort_values("probability", ascending=False)["path"][:count])


def test_the_job_report_says_the_numbers_the_review_page_shows(market_job, tmp_path):
    audit.draw(market_job, 40, seed=1)
    decide_truly(market_job, audit.to_decide(market_job)[:34], "ana@ngo.test")
    decide_truly(market_job, top_photos(market_job, 10), "ben@ngo.test")
    at = review_page()
    metrics = {metric.label: metric.value for metric in at.metric}
    shown = flat("\n".join(plain(block.value) for block in at.markdown))
    (csv_button,) = [b for b in at.get("download_button") if "Confirmed cases, CSV" in b.proto.label]
    confirmed_files = re.search(r"\((\d+)\)", csv_button.proto.label).group(1)

    result = wildvision("report", market_job, "--out", tmp_path / "report.pdf", "--out", tmp_path / "report.html", "--by", "Ana")
    assert result.returncode == 0, result.stderr[-2000:]
    laid_out, text = pdf_text(tmp_path / "report.pdf", layout=True), flat(pdf_text(tmp_path / "report.pdf"))
    page = flat(re.sub(r"<[^>]+>", " ", (tmp_path / "report.html").read_text(encoding="utf-8")))

    for label in ("Files", "Distinct photos", "Distinct photos flagged", "Distinct photos decided", "Files that could not be read"):
        assert re.search(rf"^\s*{label}\s+{re.escape(metrics[label])}\s", laid_out, re.MULTILINE), (label, metrics[label])
        assert f"{label} {metrics[label]}" in page
    estimates_said = [s for s in ("About ", "The line catches about", "Of the distinct photos it flags", "From ") if s in shown]
    assert len(estimates_said) == 4, shown
    for start in estimates_said:
        sentence = re.search(re.escape(start) + r"[^.]*\.", shown).group(0)
        assert sentence in text and sentence in page, sentence
    assert f"({confirmed_files} files with their copies)" in text
    assert re.search(r"ana@ngo\.test\s+\d+\s+\d+\s+\d+\s+\d+", laid_out) and re.search(r"ben@ngo\.test\s+10\s+", laid_out)
    assert "where the model looked, not proof of what the photo shows" in text


def test_without_an_audit_the_report_gives_the_measured_precision_and_says_what_it_cannot_tell(market_job, tmp_path):
    decide_truly(market_job, top_photos(market_job, 12))
    at = review_page()
    (precision,) = [m for m in at.metric if m.label == "Measured precision of the flags"]
    caption = next(plain(c.value) for c in at.caption if c.value.startswith("95% interval"))
    low, high, n, flagged = re.match(r"95% interval (\S+) to (\S+) \(Wilson\), from (\d+) of ([\d,]+) flagged", caption).groups()

    result = wildvision("report", market_job, "--out", tmp_path / "report.pdf", "--no-maps")
    assert result.returncode == 0, result.stderr[-2000:]
    text = flat(pdf_text(tmp_path / "report.pdf"))
    assert f"Measured precision of the flags: {precision.value} (95% interval {low} to {high}, Wilson), from {n} of {flagged} flagged photos reviewed." in text
    assert "No audit sample has been drawn" in text and "says nothing of the trade photos below the line" in text


def test_the_review_page_makes_the_report_in_the_background_and_offers_both_files(market_job):
    decide_truly(market_job, top_photos(market_job, 6))
    at = review_page()
    (make,) = [b for b in at.button if b.label == "Make a report (PDF and HTML)"]
    make.click().run()
    assert not at.exception
    assert any("being made in the background" in s.value for s in at.success)
    (request,) = poll(lambda: export_requests.export_requests(market_job), lambda found: found and found[0].state != "running", timeout_s=300)
    assert request.state == "written", request.detail
    assert export_requests.html_beside(request.output).is_file() and pdf_page_sizes(request.output)
    at = review_page()
    labels = [b.proto.label for b in at.get("download_button")]
    assert f"Report as PDF: {request.output.name}" in labels and f"Report as HTML: {export_requests.html_beside(request.output).name}" in labels


def hostile_report() -> JobReport:
    name = "<img src=x onerror=alert(1)><b>bold</b>.jpg"
    case = CaseRow(name, "97%", 1, "by <script>x</script> on 2026-12-01", "<i>note</i>", "", "<u>title</u> · shop", "", None, None, "no map")
    counts = {"files": 1, "distinct_photos": 1, "flagged_photos": 1, "decided_photos": 1, "unreadable_files": 0}
    return JobReport(
        name, "2026-12-04 10:00 UTC", "<b>Ana</b>", (name,), "", counts, "model", "line", "title", ("<a href=x>",), (), 1, 1, (case,), (), "Captive", "Not"
    )


def test_names_notes_and_titles_are_text_in_both_renderings(tmp_path):
    report = hostile_report()
    page = job_render.html(report)
    assert "<img src=x" not in page and "<script>" not in page and "<b>bold" not in page and "<a href=x>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;bold&lt;/b&gt;.jpg" in page
    job_render.write(report, tmp_path / "report.pdf")
    text = pdf_text(tmp_path / "report.pdf")
    assert "<img src=x onerror=alert(1)><b>bold</b>.jpg" in text and "<i>note</i>" in text and "<u>title</u>" in text


def test_a_report_in_another_format_is_refused_in_words(market_job, tmp_path):
    result = wildvision("report", market_job, "--out", tmp_path / "report.docx")
    assert result.returncode != 0 and "a report is written as .pdf or .html, not 'report.docx'" in result.stderr
    assert not (tmp_path / "report.docx").exists()


# --- the study deck -------------------------------------------------------------------------------


def test_the_study_deck_of_a_fresh_install_is_16_9_and_prints_the_results_and_efficiency_pages_numbers(runs_dir, tmp_path):
    result = wildvision("report", "--study", "--runs-dir", runs_dir, "--out", tmp_path / "deck.pdf")
    assert result.returncode == 0, result.stderr[-2000:]
    sizes = pdf_page_sizes(tmp_path / "deck.pdf")
    assert len(sizes) >= 6 and all(width * 9 == pytest.approx(height * 16) for width, height in sizes)
    pngs = deck.slide_pngs(tmp_path / "deck.pdf")
    assert len(pngs) == len(sizes) and all(Image.open(png).size == (1920, 1080) for png in pngs)

    results = AppTest.from_file(str(ROOT / "app_pages/results.py"), default_timeout=120).run()
    grid = results.dataframe[0].value
    printed = fixed_formatter(grid)
    on_slide = re.findall(r"\d\.\d+", pdf_text(tmp_path / "deck.pdf", page=1))
    expected = [printed(value) for value in grid.to_numpy().ravel() if not math.isnan(value)]
    assert sorted(v for v in on_slide if v in set(expected)) == sorted(expected)

    efficiency = AppTest.from_file(str(ROOT / "app_pages/efficiency.py"), default_timeout=120).run()
    gains = efficiency.dataframe[0].value
    gain_column = next(c for c in gains.columns if "gain" in str(c).lower())
    gain_slide = flat(pdf_text(tmp_path / "deck.pdf", page=4))
    for value in gains[gain_column]:
        assert str(value) in gain_slide, (value, gain_slide)
    assert "densenet121 gains the most score per extra parameter over SqueezeNet" in gain_slide


def test_a_deck_of_chosen_runs_names_them_as_runs_calls_demo_data_a_proxy_and_shows_their_galleries(completed_run, runs_dir, tmp_path):
    photos = demo_subset(tmp_path, {"captive": 4, "other": 4}, source="test_out_pet")
    explained = wildvision("explain", "default", "--test", f"small={photos}", "--top", "1", "--no-checks", "--runs-dir", runs_dir)
    assert explained.returncode == 0, explained.stderr[-2000:]
    result = wildvision("report", "--study", completed_run, "--runs-dir", runs_dir, "--out", tmp_path / "deck.pdf")
    assert result.returncode == 0, result.stderr[-2000:]
    slides_text = [flat(pdf_text(tmp_path / "deck.pdf", page=n)) for n in range(1, len(pdf_page_sizes(tmp_path / "deck.pdf")) + 1)]
    short = f"run {short_run_name(completed_run.name)}"
    assert short in slides_text[0] and "1 row marked 'run' is an own run" in slides_text[0]
    (gallery_slide,) = [text for text in slides_text if text.startswith("Where efficientnet_lite0 (the default model) looked on small")]
    assert "not proof of what the photo shows" in gallery_slide
    (data_slide,) = [text for text in slides_text if text.startswith("The data behind these numbers")]
    assert short in data_slide and data_slide.count("demo PROXY") == 2  # the default model and the run
    assert slides_text[-1] == data_slide and slides_text[-2].startswith("The words on these slides") and "test_out_nopet" in slides_text[-2]
    refused = wildvision("report", "--study", "no-such-run", "--runs-dir", runs_dir, "--out", tmp_path / "other.pdf")
    assert refused.returncode == 2 and "no-such-run is not a run folder, nor the name of a run in" in refused.stderr


def test_the_home_page_makes_the_deck_in_the_background_and_offers_its_pdf_and_slides(runs_dir):
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120).run()
    (make,) = [b for b in at.button if b.label == "Make the study deck"]
    make.click().run()
    assert not at.exception
    (request,) = poll(lambda: deck.deck_requests(runs_dir), lambda found: found and found[0].state != "running", timeout_s=300)
    assert request.state == "written", request.detail
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120).run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert f"Study deck {request.output.name}" in labels
    assert f"Its {len(deck.slide_pngs(request.output))} slides as PNGs (zip)" in labels


def test_the_grid_chart_prints_each_cell_as_the_table_does_and_differences_with_their_sign(paper_frame, tmp_path):
    from wildvision.analysis.grid import difference_to, results_grid

    grid = results_grid(paper_frame, "f_score")
    difference = difference_to(grid, grid.index[0])
    for table, signed in ((grid, False), (difference, True)):
        pdf = tmp_path / f"grid-{signed}.pdf"
        deck.write_deck([slides.grid_slide(table, "title", "caption", diverging=signed)], pdf)
        printed = fixed_formatter(table, signed=signed)
        on_slide = re.findall(r"[+-]?\d\.\d+", pdf_text(pdf))
        assert sorted(on_slide) == sorted(printed(v) for v in table.to_numpy().ravel() if not math.isnan(v))
