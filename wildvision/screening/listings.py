"""Scraped listings as a screening source: a CSV or JSONL manifest, one photo a row with the listing it came from.

NGO scrapes are listings, not loose files: a post on a platform, with its URL, its id, a date, a seller and several
photos. Evidence without the listing's URL and capture date is of little use to a platform or an investigator, so a
manifest's rows keep their listing beside the photo through review, decisions and exports.

A manifest is a .csv file with a header row, or a .jsonl file with one JSON object a line. Its image column (any of
IMAGE_HEADERS; relative paths resolve against the manifest's folder) names the photo; the other known columns
(FIELD_HEADERS, a few spellings each) fill a Listing; every other column is kept as it is, in `extra`. A manifest is
told from a list file (.txt, one path a line) by its extension, and refused before a job starts when it has no image
column or is over MAX_MANIFEST_BYTES.

Listing text is data, never markup or a link by itself: a listing URL is kept as a link only when it is an http(s)
address (a `javascript:` or `file:` URL is kept as text in `notes`, with the reason); a date is read by pandas into ISO
8601 and kept as written, with a reason, when it cannot be; a cell is cut at MAX_CELL_CHARS with a note; cells that a
spreadsheet would run (= + - @) are kept as they are and neutralised by wildvision.spreadsheet wherever a CSV is
written. A malformed JSON line or CSV row is a row of the file list with its reason, as a missing image is.

The job folder holds the listings beside files.jsonl, written with it: listings.jsonl, one JSON object a line, `row`
(the file list's row, from 0) and the Listing's fields, for the rows that came from a manifest.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

MANIFEST_EXTENSIONS = (".csv", ".jsonl")
LISTINGS = "listings.jsonl"
MAX_MANIFEST_BYTES = 50 * 2**20  # as a list file: about a million rows of listing fields
MAX_CELL_CHARS = 4000  # a cell's text at most: a listing's title or description, not a book
MAX_EXTRA_COLUMNS = 50  # extra columns kept per row; a scrape with more holds more than listings
IMAGE_HEADERS = ("image", "image_path", "image_file", "file", "path", "photo")
FIELD_HEADERS = {
    "listing_url": ("listing_url", "url", "link", "post_url"),
    "listing_id": ("listing_id", "post_id", "id", "post"),
    "title": ("title", "text", "caption", "description"),
    "listing_date": ("listing_date", "date", "capture_date", "captured_at", "post_date", "posted_at"),
    "seller": ("seller", "account", "username", "user"),
    "platform": ("platform", "site"),
}
LISTING_COLUMNS = (*FIELD_HEADERS, "listing_notes")  # what review items and exports gain for a job with listings
WEB_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Listing:
    """The listing a manifest row's photo came from. listing_url is an http(s) address or ""; notes say what was
    changed on the way in (a URL that is not a link, a date not understood, a cell cut)."""

    listing_id: str = ""
    listing_url: str = ""
    title: str = ""
    listing_date: str = ""  # ISO 8601 when it could be read, else as written (notes say so)
    seller: str = ""
    platform: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """What tells this listing from others: its platform and post id (or URL); "" when it has neither."""
        ident = self.listing_id or self.listing_url
        return f"{self.platform}|{ident}" if ident else ""


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest: the image path as written ("" when missing), its listing, or why it is no row at all."""

    image: str
    listing: Listing | None
    error: str | None = None


def is_manifest(path: str | Path) -> bool:
    """Whether a source file is read as a manifest (by its extension); .txt and others are list files."""
    return Path(path).suffix.lower() in MANIFEST_EXTENSIONS


def is_web_url(text: str) -> bool:
    """Whether `text` is an http(s) address with a host and nothing that could break out of a link."""
    if not text or any(character.isspace() or ord(character) < 32 or character in "<>\"'`" for character in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.netloc)


def _capped(name: str, value: object, notes: list[str]) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_CELL_CHARS:
        notes.append(f"{name} cut to {MAX_CELL_CHARS:,} characters (it had {len(text):,})")
        return text[:MAX_CELL_CHARS]
    return text


def iso_date(text: str) -> str | None:
    """A date as ISO 8601 (a date alone stays a date), read by pandas from ISO or common formats; None when not a date."""
    if not any(character.isdigit() for character in text):
        return None  # pandas reads "now" and "today" as the moment they are read
    try:
        when = datetime.fromisoformat(text.strip())  # most scrapers' dates, ten times faster than pandas
    except ValueError:
        when = None
    try:
        if when is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas warns when it guesses a format per value
                when = pd.to_datetime(text.strip()).to_pydatetime()
    except (ValueError, OverflowError, TypeError, AttributeError):  # AttributeError: NaT, which has no to_pydatetime
        return None
    midnight = when.tzinfo is None and (when.hour, when.minute, when.second, when.microsecond) == (0, 0, 0, 0)
    return when.date().isoformat() if midnight else when.isoformat()


def _column(names: list[str], spellings: tuple[str, ...]) -> str | None:
    lowered = {name.strip().lower(): name for name in names}
    return next((lowered[spelling] for spelling in spellings if spelling in lowered), None)


def _listing(record: dict[str, object]) -> tuple[str, Listing]:
    """A manifest record's image path and Listing, each cell capped, the URL and date checked."""
    names = list(record)
    notes: list[str] = []
    image_column = _column(names, IMAGE_HEADERS)
    image = _capped("image path", record.get(image_column) if image_column else "", notes).strip()
    used = {image_column}
    fields: dict[str, str] = {}
    for name, spellings in FIELD_HEADERS.items():
        column = _column(names, spellings)
        used.add(column)
        fields[name] = _capped(name, record.get(column) if column else "", notes).strip() if column else ""
    url = fields["listing_url"]
    if url and not is_web_url(url):
        notes.append(f"listing URL {url[:200]!r} is not an http(s) address: kept as text, never as a link")
        fields["listing_url"] = ""
    if fields["listing_date"] and (date := iso_date(fields["listing_date"])) is None:
        notes.append(f"date {fields['listing_date'][:100]!r} not understood: kept as written")
    elif fields["listing_date"]:
        fields["listing_date"] = date
    extra_names = [name for name in names if name not in used]
    if len(extra_names) > MAX_EXTRA_COLUMNS:
        notes.append(f"{len(extra_names) - MAX_EXTRA_COLUMNS:,} extra columns left out (at most {MAX_EXTRA_COLUMNS} are kept)")
    extra = {_capped("column name", name, notes): _capped(str(name)[:80], record[name], notes) for name in extra_names[:MAX_EXTRA_COLUMNS]}
    return image, Listing(**fields, extra=extra, notes=tuple(notes))


def _csv_rows(manifest: Path) -> Iterator[ManifestRow]:
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_MANIFEST_BYTES)  # a cell of megabytes is cut with a note, not a parsing error
    try:
        with open(manifest, encoding="utf-8-sig", errors="replace", newline="") as handle:  # -sig: Excel's CSVs start with a BOM
            reader = csv.reader(handle)
            header = next(reader, [])
            try:
                for cells in reader:
                    if not any(cell.strip() for cell in cells):
                        continue
                    if len(cells) != len(header):
                        where = f"{manifest.name} line {reader.line_num:,}"
                        yield ManifestRow(where, None, f"a malformed row: {len(cells)} cells where the header has {len(header)}; not read")
                        continue
                    image, listing = _listing(dict(zip(header, cells)))
                    yield ManifestRow(image, listing)
            except csv.Error as error:
                yield ManifestRow(f"{manifest.name} line {reader.line_num:,}", None, f"the rest of the manifest cannot be read as CSV ({error})")
    finally:
        csv.field_size_limit(limit)


def _jsonl_rows(manifest: Path) -> Iterator[ManifestRow]:
    with open(manifest, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield ManifestRow(f"{manifest.name} line {number:,}", None, f"a malformed JSON line ({error.msg}); not read")
                continue
            if not isinstance(record, dict):
                yield ManifestRow(f"{manifest.name} line {number:,}", None, "a JSON line that is not an object of named fields; not read")
                continue
            image, listing = _listing(record)
            yield ManifestRow(image, listing)


def manifest_rows(manifest: str | Path) -> Iterator[ManifestRow]:
    """A manifest's rows in order (streamed): each image path with its Listing, or a row saying why it is no photo."""
    manifest = Path(manifest)
    rows = _jsonl_rows(manifest) if manifest.suffix.lower() == ".jsonl" else _csv_rows(manifest)
    for number, row in enumerate(rows, 1):
        if row.error is None and not row.image:
            yield ManifestRow(f"{manifest.name} row {number:,}", row.listing, "no image path in this row")
        else:
            yield row


def _header(manifest: Path) -> list[str]:
    """The manifest's column names: a CSV's header, or the first JSON object's keys ([] when there is none)."""
    with open(manifest, encoding="utf-8-sig", errors="replace", newline="") as handle:
        if manifest.suffix.lower() == ".csv":
            return [str(name) for name in next(csv.reader(handle), [])]
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return []
                return list(record) if isinstance(record, dict) else []
    return []


def manifest_problem(source: str) -> str | None:
    """Why a manifest cannot be a source, in words: over MAX_MANIFEST_BYTES, or no image column in its header."""
    size = os.stat(source).st_size
    if size > MAX_MANIFEST_BYTES:
        return f"{source} is {size / 2**20:,.1f} MB: a manifest of listings may be at most {MAX_MANIFEST_BYTES // 2**20} MB (split it into several)"
    try:
        header = _header(Path(source))
    except (csv.Error, OSError) as error:
        return f"{source} cannot be read as a manifest ({error})"
    if _column(header, IMAGE_HEADERS) is None:
        kind = "header row" if source.lower().endswith(".csv") else "first JSON line"
        return f"{source} has no image column in its {kind}: a manifest names each photo in a column called {', '.join(IMAGE_HEADERS)}"
    return None


def listing_json(row: int, listing: Listing) -> str:
    """One line of listings.jsonl."""
    return json.dumps({"row": row, **asdict(listing)}, ensure_ascii=False) + "\n"


def read_listings(screen_dir: str | Path) -> dict[int, Listing]:
    """listings.jsonl's listings by file-list row (from 0); {} for a job without a manifest."""
    path = Path(screen_dir) / LISTINGS
    if not path.is_file():
        return {}
    listings = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            row = record.pop("row")
            listings[row] = Listing(**{**record, "notes": tuple(record.get("notes", ()))})
    return listings


def listing_cells(listing: Listing | None) -> list[str]:
    """A listing as LISTING_COLUMNS' cells (all "" for a photo that came from no listing)."""
    if listing is None:
        return [""] * len(LISTING_COLUMNS)
    return [getattr(listing, name) for name in FIELD_HEADERS] + ["; ".join(listing.notes)]


def with_listings(items: pd.DataFrame, screen_dir: str | Path, rows: list[int]) -> pd.DataFrame:
    """Review items with their listings' columns (LISTING_COLUMNS), `listing_key` and `listing_photos` (distinct
    photos of the listing), when the job has listings; `rows`: each item's file-list row. Unchanged otherwise."""
    listings = read_listings(screen_dir)
    if not listings:
        return items
    cells = [listing_cells(listings.get(row)) for row in rows]
    items = items.copy()
    for index, name in enumerate(LISTING_COLUMNS):
        items[name] = [row[index] for row in cells]
    items["listing_key"] = [listings[row].key if row in listings else "" for row in rows]
    counted = items[items["listing_key"] != ""]
    photos = counted.groupby("listing_key")["group"].nunique() if "group" in items else counted.groupby("listing_key").size()
    items["listing_photos"] = items["listing_key"].map(photos).fillna(0).astype(int)
    return items


def listing_paths(items: pd.DataFrame, path: str) -> list[str]:
    """Every file of `path`'s listing (just `path` for a photo from no listing), in the items' order."""
    if "listing_key" not in items:
        return [path]
    key = items.loc[items["path"] == path, "listing_key"]
    if key.empty:
        raise ValueError(f"{path} is not in this screening job")
    return items.loc[items["listing_key"] == key.iloc[0], "path"].tolist() if key.iloc[0] else [path]


def listing_filter(items: pd.DataFrame, platform: str | None, date_from: str | None, date_to: str | None) -> pd.Series:
    """Which items are from `platform` and dated from `date_from` to `date_to` (ISO dates, inclusive; None: no bound).
    A job without listings has none; a listing whose date could not be read is outside every range."""
    if "listing_key" not in items:
        return pd.Series(False, index=items.index)
    keep = pd.Series(True, index=items.index)
    if platform is not None:
        keep &= items["platform"] == platform
    if date_from is not None or date_to is not None:
        day = items["listing_date"].str[:10]
        dated = day.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
        keep &= dated & (day >= (date_from or "")) & (day <= (date_to or "9999-12-31"))
    return keep
