"""A screening job's audit sample: distinct photos chosen at random, so that their decisions measure the whole job.

Photos people pick to review (the top of the queue, a folder that looked suspicious) say how good those photos were,
not how good the flags are: 40 from the top of a queue may be 92% right while a random 60 of the other flags are 50%
right. Photos chosen by a known random design can be weighted back to the whole job (estimates.py).

The unit is a distinct photo: one per duplicate group (a repost is the same photo), shown by the member the Review
page shows (the group's highest-scored file); unreadable files are no photo and are left out.

Strata are the score bands at the job's line when the sample is first drawn: flagged (at or above the line),
uncertain (up to review.UNCERTAIN_WIDTH below it) and rest. The line, the seed and each stratum's size are recorded
then and reused by every later draw, so a line adopted later does not change the design (estimates.py handles a
moved line by post-stratifying). Allocation: 40% of the sample from the flagged photos (precision), 35% from the
uncertain band and 25% from the rest (recall: trade below the line is rare per photo but the rest is large, so
without a fixed share there its trade, and so the recall, could not be estimated at all); a stratum that runs out
passes its share on to the others. Units are allocated one at a time, each to the stratum furthest below its share,
so the allocation of n + 1 units extends that of n.

Growth: each stratum has its own seeded permutation of its photos; drawing more takes the next ones in each, so
asking for 50 and then 50 more gives exactly the sample, in the same order, that asking for 100 once gives. Every
photo's stratum is recorded at the first draw (audit_frame), so a job re-scored since by another model
(rescore.py) still grows the sample it began.

Which photos were decided does not matter for fairness, only which were selected: a decision made anywhere on the
Review page on a sampled photo counts, and decisions on photos outside the sample never enter the estimates.

decisions.sqlite keeps the design (audit_design, audit_frame) and the sampled units (audit), beside the decisions.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from wildvision import runs
from wildvision.screening import decisions
from wildvision.screening.decision_store import key, path_of, reading, writing
from wildvision.screening.review import UNCERTAIN_WIDTH, Filters, queue, read_items, read_job, with_decisions

FLAGGED, UNCERTAIN, REST = "flagged", "uncertain", "rest"
STRATA = (FLAGGED, UNCERTAIN, REST)
#: Each stratum's share of the sample (see the module's docstring for why).
SHARES = {FLAGGED: 0.40, UNCERTAIN: 0.35, REST: 0.25}
PHOTO, LISTING = "photo", "listing"
UNIT_WORDS = {PHOTO: "distinct photos", LISTING: "listings"}
UNIT = UNIT_WORDS[PHOTO]
COLUMNS = ["path", "stratum", "stratum_size", "inclusion_probability", "draw_order", "score", "decision"]


def units(screen_dir: str | Path, unit: str = PHOTO) -> pd.DataFrame:
    """The job's sampling units, sorted by path: path (the photo that stands for it), group (the unit's id), score
    (its highest probability) and group_decision (empty where undecided). `unit` PHOTO: distinct photos (duplicate
    groups); LISTING: listings (listing_decision says when one is decided), a photo from no listing its own unit."""
    items = with_decisions(read_items(screen_dir), decisions.current(screen_dir))
    return _units(items) if unit == PHOTO else _listing_units(items, read_job(screen_dir).positive)


def _units(items: pd.DataFrame) -> pd.DataFrame:
    photos = queue(items, 0.5, Filters(bands=(), decided="any"))
    photos = photos[photos["probability"].notna()]
    frame = photos[["path", "group", "probability", "group_decision"]].rename(columns={"probability": "score"})
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def listing_decision(labels: list[str], positive: str) -> str:
    """A listing's decision from its distinct photos': trade as soon as one photo is; otherwise undecided ("") until
    every photo is decided, then unsure if all are unsure, else not trade (the first such label)."""
    if positive in labels:
        return positive
    if "" in labels or not labels:
        return ""
    told = [label for label in labels if label != decisions.UNSURE]
    return told[0] if told else decisions.UNSURE


def _file_units(items: pd.DataFrame, unit: str) -> pd.Series:
    """Each file's unit id: its duplicate group; with LISTING, its listing's key (a photo from no listing: its group)."""
    if unit == PHOTO or "listing_key" not in items:
        return items["group"]
    return items["listing_key"].where(items["listing_key"] != "", items["group"])


def _listing_units(items: pd.DataFrame, positive: str) -> pd.DataFrame:
    photos = _units(items)
    of_group = pd.Series(_file_units(items, LISTING).to_numpy(), index=items["group"]).groupby(level=0).first()
    photos["unit"] = photos["group"].map(of_group)
    best = photos.sort_values(["score", "path"], ascending=[False, True], kind="stable").groupby("unit", sort=False)
    frame = best.agg(path=("path", "first"), score=("score", "max"), group_decision=("group_decision", lambda d: listing_decision(list(d), positive)))
    frame = frame.reset_index().rename(columns={"unit": "group"})
    return frame[["path", "group", "score", "group_decision"]].sort_values("path", kind="stable").reset_index(drop=True)


def _unit_of_file(screen_dir: str | Path, unit: str = PHOTO) -> pd.DataFrame:
    """Each file's unit (score, group_decision), by file path: a sampled unit is found by any of its members, so a job
    re-scored since the draw (which may show another member) still finds it."""
    items = with_decisions(read_items(screen_dir), decisions.current(screen_dir))
    found = (_units(items) if unit == PHOTO else _listing_units(items, read_job(screen_dir).positive)).set_index("group")
    ids = _file_units(items, unit)
    files = items[ids.isin(found.index)]
    return found.loc[ids[files.index], ["score", "group_decision"]].set_axis(files["path"].tolist())


def strata(scores: pd.Series, line: float) -> pd.Series:
    """Each score's stratum at `line`."""
    conditions = [scores >= line, scores >= line - UNCERTAIN_WIDTH]
    return pd.Series(np.select(conditions, [FLAGGED, UNCERTAIN], REST), index=scores.index, dtype=object)


def allocation(total: int, sizes: Mapping[str, int]) -> list[str]:
    """The stratum of each of the first `total` units drawn (fewer when the strata run out): each unit goes to the
    stratum furthest below its share of the units so far, among those with photos left."""
    taken = dict.fromkeys(STRATA, 0)
    order = []
    for k in range(1, min(total, sum(sizes.values())) + 1):
        open_strata = [s for s in STRATA if taken[s] < sizes[s]]
        weight = sum(SHARES[s] for s in open_strata)
        chosen = max(open_strata, key=lambda s: SHARES[s] / weight * k - taken[s])
        taken[chosen] += 1
        order.append(chosen)
    return order


def _permutation(paths: list[str], seed: int, stratum: str) -> list[str]:
    """The stratum's photos in their seeded random order."""
    rng = np.random.default_rng([seed, STRATA.index(stratum)])
    return [paths[i] for i in rng.permutation(len(paths))]


def _design(connection) -> tuple | None:
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "audit_design" not in tables:
        return None
    return connection.execute("SELECT seed, line, flagged_size, uncertain_size, rest_size, unit FROM audit_design").fetchone()


def draw(screen_dir: str | Path, size: int, seed: int | None = None, person: str = "audit", unit: str | None = None) -> list[str]:
    """Add `size` units to the job's audit sample (fewer when the job runs out) and return the whole sample's paths
    in draw order. The first draw fixes the design: `seed` (random when None), the unit (PHOTO unless given), the
    job's line and the strata's sizes; a later draw keeps them, and refuses a different `seed` or `unit`."""
    if unit not in (None, PHOTO, LISTING):
        raise ValueError(f"an audit counts {PHOTO}s or {LISTING}s, not {unit!r}")
    if size < 1:
        raise ValueError(f"the sample grows by at least 1 distinct photo, not {size}")
    job = read_job(screen_dir)
    with writing(screen_dir) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            design = _design(connection)
            if design is None:
                seed = secrets.randbelow(2**31) if seed is None else seed
                unit = unit or PHOTO
                if unit == LISTING and "listing_key" not in read_items(screen_dir):
                    raise ValueError(f"screening job {job.name} was not screened from a manifest of listings: its audit can count distinct photos only")
                photos = units(screen_dir, unit)
                photos["stratum"] = strata(photos["score"], job.threshold)
                sizes = {s: int((photos["stratum"] == s).sum()) for s in STRATA}
                connection.executemany("INSERT INTO audit_frame VALUES (?, ?)", [(key(p), s) for p, s in zip(photos["path"], photos["stratum"])])
                connection.execute(
                    "INSERT INTO audit_design VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (seed, job.threshold, unit, sizes[FLAGGED], sizes[UNCERTAIN], sizes[REST], runs.now(), person),
                )
            else:
                if seed is not None and seed != design[0]:
                    raise ValueError(f"the audit sample of screening job {job.name} was drawn with seed {design[0]}, not {seed}: leave --seed out to grow it")
                if unit is not None and unit != design[5]:
                    raise ValueError(f"the audit sample of screening job {job.name} counts {UNIT_WORDS[design[5]]}, not {UNIT_WORDS[unit]}")
                seed, sizes = design[0], dict(zip(STRATA, design[2:5]))
            have = connection.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
            sampled = _grow(connection, seed, sizes, have + size)
            connection.executemany(
                "INSERT INTO audit VALUES (?, ?, ?, ?)",
                [(key(path), stratum, sizes[stratum], order) for order, (path, stratum) in enumerate(sampled) if order >= have],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return [path for path, _ in sampled]


def _grow(connection, seed: int, sizes: Mapping[str, int], total: int) -> list[tuple[str, str]]:
    """The first `total` (path, stratum) of the design, from each unit's stratum recorded at the first draw."""
    rows = connection.execute("SELECT path, stratum FROM audit_frame").fetchall()
    members = {s: sorted(path_of(path) for path, stratum in rows if stratum == s) for s in STRATA}
    queues = {s: iter(_permutation(members[s], seed, s)) for s in STRATA}
    return [(next(queues[s]), s) for s in allocation(total, sizes)]


def sample(screen_dir: str | Path) -> pd.DataFrame | None:
    """One row per sampled unit in draw order: path, stratum, stratum_size, inclusion_probability (the share of its
    stratum sampled so far, n_h / N_h), draw_order, score (its highest probability) and decision (its repost group's
    latest label, empty where undecided); None when there is no sample."""
    with reading(screen_dir) as connection:
        design_row = None if connection is None else _design(connection)
        if design_row is None:
            return None
        rows = connection.execute("SELECT path, stratum, stratum_size, draw_order FROM audit ORDER BY draw_order").fetchall()
    if not rows:
        return None
    frame = pd.DataFrame([(path_of(r[0]), *r[1:]) for r in rows], columns=["path", "stratum", "stratum_size", "draw_order"])
    frame["inclusion_probability"] = frame.groupby("stratum")["path"].transform("size") / frame["stratum_size"]
    unit_of = _unit_of_file(screen_dir, design_row[5])
    frame["score"] = frame["path"].map(unit_of["score"])
    frame["decision"] = frame["path"].map(unit_of["group_decision"]).fillna("")
    return frame[COLUMNS]


def design(screen_dir: str | Path) -> dict | None:
    """The recorded design: seed, line, unit (PHOTO or LISTING) and each stratum's size in units; None when there is
    no sample."""
    with reading(screen_dir) as connection:
        found = None if connection is None else _design(connection)
    return None if found is None else {"seed": found[0], "line": found[1], "unit": found[5], "sizes": dict(zip(STRATA, found[2:5]))}


def audit_paths(screen_dir: str | Path) -> set[str]:
    """Every file of every sampled unit (all members of its duplicate groups, all photos of its listing): what
    retraining holds out, so the audit keeps measuring a retrained model honestly. Empty when the job has no sample."""
    frame = sample(screen_dir)
    if frame is None:
        return set()
    items = read_items(screen_dir)
    ids = _file_units(items, design(screen_dir)["unit"])
    return set(items.loc[ids.isin(set(ids[items["path"].isin(frame["path"])])), "path"])


def to_decide(screen_dir: str | Path) -> list[str]:
    """The distinct photos to decide for the sampled units nobody decided yet, in draw order: the unit's own photo,
    or for a listing each of its undecided photos. An unsure decision counts as decided (it was looked at) though it
    tells nothing: the estimates leave it out, and deciding it again is up to the reviewer."""
    frame = sample(screen_dir)
    if frame is None:
        return []
    open_units = frame.loc[frame["decision"] == "", "path"].tolist()
    if design(screen_dir)["unit"] == PHOTO:
        return open_units
    items = with_decisions(read_items(screen_dir), decisions.current(screen_dir))
    photos = _units(items)
    ids = pd.Series(_file_units(items, LISTING).to_numpy(), index=items["path"])
    photos["unit"] = photos["path"].map(ids)
    undecided = photos[photos["group_decision"] == ""]
    return [path for unit_path in open_units for path in undecided.loc[undecided["unit"] == ids[unit_path], "path"]]
