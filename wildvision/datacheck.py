"""What is in a dataset before anyone trains on it: counts, unreadable files, sizes, duplicates and label conflicts.

Real collections are messy: the same photo is saved twice under two names, once as a smaller re-encoded
copy, or filed under two classes. Each of these quietly changes what a model learns or how good it
looks: a duplicate weighs one photo double, a test image that is also a training image makes its test
set's scores optimistic, and a photo labelled both captive and wild teaches the model nothing but noise.

Two images are the same photo when `wildvision.photos` says so: identical bytes (SHA-256) or perceptual hashes
(pHash) at most `photos.PHASH_THRESHOLD` bits apart (the measurements behind that threshold are in its docstring).

Matches are joined into duplicate groups (connected components: a copy of a copy is the same photo). A
group whose images carry different labels (the positive class and a negative one) is a label conflict.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps

from wildvision import photos, roots
from wildvision.data import DataFolderError, Sample, scan_folder
from wildvision.images import open_image
from wildvision.photos import PHASH_THRESHOLD, ImageFacts, all_facts


@dataclass(frozen=True)
class Entry:
    """An image and where it sits: `source` is the data folder or test set name, `test` whether it is a test set."""

    path: Path
    source: str
    class_name: str
    positive: bool
    test: bool

    @property
    def where(self) -> str:
        return f"{self.source}/{self.class_name}"


@dataclass(frozen=True)
class ClassSummary:
    """One class folder: image count, its share of its data folder, unreadable files, and sizes as (min, median, max)."""

    source: str
    class_name: str
    images: int
    share: float
    unreadable: tuple[tuple[Path, str], ...]
    widths: tuple[int, int, int] | None
    heights: tuple[int, int, int] | None


@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are one photo; `identical`: all have the same bytes; `distance`: the largest pHash gap of a match."""

    members: tuple[Entry, ...]
    identical: bool
    distance: int

    @property
    def conflict(self) -> bool:
        """The photo carries both labels: positive in one place, negative in another."""
        return len({m.positive for m in self.members}) == 2

    @property
    def places(self) -> tuple[str, ...]:
        return tuple(sorted({m.where for m in self.members}))

    @property
    def kind(self) -> str:
        """conflict, test-vs-data (a test image that is also in a data folder), between-tests or within-data."""
        if self.conflict:
            return "conflict"
        tests = {m.test for m in self.members}
        return "test-vs-data" if tests == {True, False} else "between-tests" if tests == {True} else "within-data"


@dataclass(frozen=True)
class DataReport:
    """The whole check: per-class summaries, duplicate groups (largest first) and how it was done."""

    classes: tuple[ClassSummary, ...]
    groups: tuple[DuplicateGroup, ...]
    threshold: int
    seconds: float

    @property
    def conflicts(self) -> tuple[DuplicateGroup, ...]:
        return tuple(g for g in self.groups if g.conflict)

    def test_leaks(self) -> dict[str, list[Path]]:
        """Per test set, its images that are also in a data folder (its scores would be optimistic)."""
        leaks: dict[str, list[Path]] = defaultdict(list)
        for group in self.groups:
            if any(not m.test for m in group.members):
                for m in group.members:
                    if m.test:
                        leaks[m.source].append(m.path)
        return dict(leaks)

    @property
    def unreadable(self) -> int:
        return sum(len(c.unreadable) for c in self.classes)


def duplicate_groups(entries: Sequence[Entry], facts: Sequence[ImageFacts], threshold: int = PHASH_THRESHOLD) -> list[DuplicateGroup]:
    """Entries joined by identical bytes or near pHashes into groups of two or more, largest first (photos.group:
    no pairs of files are listed, so thousands of copies of one placeholder cost memory in files, not pairs)."""
    grouping = photos.group([f.sha256 for f in facts], [f.phash for f in facts], threshold)
    members: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(grouping.labels):
        members[label].append(index)
    groups = [
        DuplicateGroup(
            tuple(sorted((entries[i] for i in indices), key=lambda e: (e.test, e.source, str(e.path)))),
            len({facts[i].sha256 for i in indices}) == 1,
            grouping.widest[label],
        )
        for label, indices in members.items()
        if len(indices) > 1
    ]
    return sorted(groups, key=lambda g: (-len(g.members), str(g.members[0].path)))


def sample_groups(samples: Sequence[Sample]) -> list[list[Sample]]:
    """Training samples that are one photo (identical or near), as groups of two or more (training dedups by these)."""
    entries = [Entry(s.path, "", s.class_name, s.label == 1, False) for s in samples]
    by_path = {s.path: s for s in samples}
    return [[by_path[m.path] for m in group.members] for group in duplicate_groups(entries, all_facts([s.path for s in samples]))]


def test_duplicates(train: Sequence[Sample], tests: dict[str, Sequence[Sample]]) -> dict[str, list[tuple[Path, Path]]]:
    """photos.test_duplicates of training samples and named test sets' samples, as training records them."""
    return photos.test_duplicates([s.path for s in train], {name: [s.path for s in samples] for name, samples in tests.items()})


def _triple(values: list[int]) -> tuple[int, int, int] | None:
    return (min(values), int(statistics.median(values)), max(values)) if values else None


def check_data(folders: Sequence[str | Path], tests: dict[str, Path] | None = None, positive: str = "captive") -> DataReport:
    """Check data folders (one sub-folder per class, background included) and named test sets together.

    Raises DataFolderError when a folder's layout cannot be used at all (as training would).
    """
    started = time.perf_counter()
    entries: list[Entry] = []
    named = [(Path(f).name or str(f), Path(f), False) for f in folders] + [(name, Path(f), True) for name, f in (tests or {}).items()]
    for source, folder, test in named:
        entries += [Entry(s.path, source, s.class_name, s.label == 1, test) for s in scan_folder(folder, positive, with_background=True)]
    facts = all_facts([e.path for e in entries])
    per_class: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        per_class[(entry.source, entry.class_name)].append(index)
    per_source: dict[str, int] = defaultdict(int)
    for (source, _), indices in per_class.items():
        per_source[source] += len(indices)
    classes = []
    for (source, class_name), indices in per_class.items():
        sizes = [facts[i].size for i in indices if facts[i].size is not None]
        classes.append(
            ClassSummary(
                source,
                class_name,
                len(indices),
                len(indices) / per_source[source],
                tuple((entries[i].path, facts[i].error) for i in indices if facts[i].error is not None),
                _triple([w for w, _ in sizes]),
                _triple([h for _, h in sizes]),
            )
        )
    return DataReport(tuple(classes), tuple(duplicate_groups(entries, facts)), PHASH_THRESHOLD, time.perf_counter() - started)


def match_words(group: DuplicateGroup) -> str:
    """How a group's files matched, in plain words. Equal perceptual hashes are "looks identical", not identical
    pixels: on the demo data such copies differ by 0.2 to 0.6 levels of 255 on average (re-saved JPEGs)."""
    if group.identical:
        return "identical files"
    if group.distance == 0:
        return "looks identical (a re-saved copy)"
    return f"near-duplicate (perceptual hashes {group.distance} of 64 bits apart at most)"


def _group_line(group: DuplicateGroup) -> str:
    return f"  {match_words(group)}: " + " | ".join(f"{m.source}: {m.path}" for m in group.members)


@dataclass(frozen=True)
class Subset:
    """Every photo of test set `inner` (`photos` files) has a copy in test set `outer`."""

    inner: str
    outer: str
    photos: int
    groups: int  # duplicate groups holding photos of both


def contained_test_sets(report: DataReport) -> list[Subset]:
    """Test sets all of whose photos are also in another test set, e.g. one made from another's photos by design (the
    demo data's test_out_nopet is test_out_pet without its everyday photos of animals): their many shared groups are
    that overlap, not copies made by mistake. Computed from the groups, so it holds for any test sets."""
    files: dict[str, int] = defaultdict(int)
    for c in report.classes:
        files[c.source] += c.images
    shared_photos: dict[tuple[str, str], int] = defaultdict(int)
    shared_groups: dict[tuple[str, str], int] = defaultdict(int)
    for group in report.groups:
        tests = {m.source for m in group.members if m.test}
        for inner in tests:
            for outer in tests - {inner}:
                shared_photos[(inner, outer)] += sum(m.source == inner for m in group.members)
                shared_groups[(inner, outer)] += 1
    return [Subset(inner, outer, count, shared_groups[(inner, outer)]) for (inner, outer), count in shared_photos.items() if count == files[inner] > 0]


def subset_line(subset: Subset) -> str:
    return (
        f"Every one of the {subset.photos:,} photos of {subset.inner} is also in {subset.outer} ({subset.inner} is a subset of "
        f"{subset.outer}), so {subset.groups:,} duplicate groups join the two. A test set made from "
        "another's photos overlaps it by design; it matters only if the two were meant to hold different photos."
    )


SECTIONS = {
    "conflict": "label conflicts: one photo under the positive class and a negative one (training leaves these out)",
    "test-vs-data": "test images that are also in a data folder (that test set's scores would be optimistic)",
    "within-data": "duplicates within the data folders (training uses one image of each)",
    "between-tests": "duplicates within or between test sets",
}


def report_lines(report: DataReport) -> list[str]:
    """The report as plain text for a terminal: per-class table, unreadable files, then each duplicate group (one
    line naming its files) under its kind, label conflicts first."""
    size = lambda triple: "/".join(map(str, triple)) if triple else "-"
    lines = [f"{'folder/class':<32} {'images':>7} {'share':>6} {'unreadable':>10}  {'width min/median/max':<21} height min/median/max"]
    for c in report.classes:
        lines.append(f"{c.source + '/' + c.class_name:<32} {c.images:>7} {c.share:>6.0%} {len(c.unreadable):>10}  {size(c.widths):<21} {size(c.heights)}")
    for c in report.classes:
        lines += [f"unreadable: {path}: {reason}" for path, reason in c.unreadable]
    redundant = sum(len(g.members) - 1 for g in report.groups)
    lines.append(
        f"{len(report.groups)} duplicate groups ({redundant} images beyond the first of each; pHash threshold {report.threshold} bits), "
        f"{len(report.conflicts)} label conflicts, {report.unreadable} unreadable; checked in {report.seconds:.1f} s"
    )
    lines += [f"{name}: {len(paths)} images also in a data folder" for name, paths in report.test_leaks().items()]
    lines += [subset_line(subset) for subset in contained_test_sets(report)]
    for kind, title in SECTIONS.items():
        groups = [g for g in report.groups if g.kind == kind]
        if groups:
            lines.append(f"{title}: {len(groups)} groups")
            lines += [_group_line(g) for g in groups]
    return lines


def run_check(folders: list[str], tests: list[tuple[str, str]], positive: str = "captive") -> int:
    """Print the report; exit code 0 when nothing was found, 1 with duplicates, conflicts or unreadable files,
    2 when a folder cannot be used at all."""
    try:
        report = check_data(folders, {name: Path(folder) for name, folder in tests}, positive)
    except DataFolderError as error:
        print(f"error: {error}")
        return 2
    print("\n".join(report_lines(report)))
    return 1 if report.groups or report.unreadable else 0


# ---------------------------------------------------------------------------------------------
# The report as tables, for the dashboard's Data page (and its CSV download)
# ---------------------------------------------------------------------------------------------

FINDING_COLUMNS = ["group", "kind", "source", "class", "path", "match", "reason"]


def class_table(report: DataReport) -> pd.DataFrame:
    """One row per class folder: folder, class, images, share of its folder, unreadable files, and image sizes
    as "min / median / max" pixels."""
    size = lambda triple: " / ".join(map(str, triple)) if triple else "-"
    return pd.DataFrame(
        [
            {
                "folder": c.source,
                "class": c.class_name,
                "images": c.images,
                "share": c.share,
                "unreadable": len(c.unreadable),
                "width (min / median / max)": size(c.widths),
                "height (min / median / max)": size(c.heights),
            }
            for c in report.classes
        ],
        columns=["folder", "class", "images", "share", "unreadable", "width (min / median / max)", "height (min / median / max)"],
    )


def findings_table(report: DataReport) -> pd.DataFrame:
    """Every finding, one row per file: each file of each duplicate group (group numbered from 1 as in the report,
    kind as `DuplicateGroup.kind`, source, class, path, match: identical or how near), then each unreadable file
    (kind "unreadable", no group, and the reason)."""
    rows = []
    for number, group in enumerate(report.groups, 1):
        match = match_words(group)
        rows += [
            {"group": number, "kind": group.kind, "source": m.source, "class": m.class_name, "path": str(m.path), "match": match, "reason": ""}
            for m in group.members
        ]
    for c in report.classes:
        rows += [
            {"group": None, "kind": "unreadable", "source": c.source, "class": c.class_name, "path": str(path), "match": "", "reason": reason}
            for path, reason in c.unreadable
        ]
    table = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    table["group"] = table["group"].astype("Int64")
    return table


def class_samples(folder: str | Path, count: int = 6, positive: str = "captive") -> dict[str, list[Path]]:
    """Up to `count` images per class folder, spread evenly over each class's files in name order (the same ones
    every time). Raises DataFolderError like `check_data`."""
    by_class: dict[str, list[Path]] = defaultdict(list)
    for sample in scan_folder(folder, positive, with_background=True):
        by_class[sample.class_name].append(sample.path)
    picked = {}
    for class_name, paths in by_class.items():
        paths = sorted(paths)
        if len(paths) > count:
            paths = [paths[round(i * (len(paths) - 1) / max(count - 1, 1))] for i in range(count)]
        picked[class_name] = paths
    return picked


def thumbnail(path: str | Path, size: int = 160) -> Image.Image:
    """The whole image, upright, fitted into a `size` x `size` square (padded in light grey), decoded small
    (`open_image`'s draft); raises ImageError when it cannot be read."""
    return ImageOps.pad(open_image(path, draft=(size, size)), (size, size), color=(240, 242, 246))


def fingerprint(folders: Sequence[str | Path]) -> tuple[tuple[str, int, int], ...]:
    """Per folder: its path, how many files it holds and the newest modification time (ns): cheap (no file is read),
    and it changes when a file is added, removed or rewritten, so a cached check can be keyed by it. The walk is
    roots.walk (a link back up the tree is walked once; a tree over roots.WALK_LIMIT entries raises WalkTooLarge,
    which the Data page shows as "too large to check here" and remembers for the session)."""
    result = []
    for folder in folders:
        count, newest = 0, 0
        for directory, _, names in roots.walk(folder, roots.WALK_LIMIT):  # each real folder once: a link loop ends; WalkTooLarge past the limit
            for name in names:
                try:
                    stat = os.stat(os.path.join(directory, name))
                except OSError:  # a link that points nowhere: still a change in the folder
                    stat = os.lstat(os.path.join(directory, name))
                count, newest = count + 1, max(newest, stat.st_mtime_ns)
        result.append((str(folder), count if Path(folder).is_dir() else -1, newest))
    return tuple(result)
