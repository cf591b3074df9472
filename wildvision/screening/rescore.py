"""Which scores and which model are current for a screening job, and adopting another model for it.

A model retrained on the job's decisions (screening.retrain) shares the backbone that screened the job, so the job's
stored features (job_features) are all the new head needs: adopting it re-scores every photo in seconds, with no
photo decoded again. The re-scoring is a new version of the scores, never an overwrite of the old one:

  scores.csv                 always the current version: every reader (Review, exports, the job list) reads it
  scores-versions/v<N>.csv   each earlier version, kept as it was (v1: the job's first scores)
  versions.json              one entry per version: number, file, model, model_file, architecture, threshold,
                             made_at, adopted_by (None for the job's own first scores), replaced_threshold
                             (the threshold people had adopted when it was made, which no longer applies)

config.json's model fields (model, model_file, model_version, architecture, threshold, class_names) name the
current version's model, so review.read_job and the exports read the new model without knowing about versions;
versions.json keeps the models of earlier versions. Decisions are kept (they are by path, and the photos are the
same); a threshold people adopted on an earlier version's scores no longer applies (adopted_threshold).

Refused in words: a job without stored features (screened by an older wildvision), a job not completed, a run folder
that is not completed, a model whose backbone or architecture is not the one that made the features.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from wildvision import novelty, runs
from wildvision.inference import positive_probabilities
from wildvision.models import head
from wildvision.predict import LoadedModel, load_model
from wildvision.screening import decisions, job_features
from wildvision.screening.config import SCORES, read_config, write_config
from wildvision.screening.merge import SCORES_COLUMNS
from wildvision.screening.scoring import write_rows

VERSIONS_DIR, VERSIONS = "scores-versions", "versions.json"
CHUNK = 65_536  # rows of features through the head at once: 160 MB of float32 at 1280 features


def versions(screen_dir: str | Path) -> list[dict]:
    """Every version of the job's scores, oldest first; the last is current and its file is scores.csv. A job never
    re-scored has one: its own first scores, by the model in config.json."""
    screen_dir = Path(screen_dir)
    if (screen_dir / VERSIONS).is_file():
        return list(runs.read_json(screen_dir / VERSIONS))
    config = read_config(screen_dir)
    status = runs.read_json(screen_dir / runs.STATUS) if (screen_dir / runs.STATUS).is_file() else {}
    return [
        {
            "version": 1,
            "file": SCORES,
            "model": config.model,
            "model_file": config.model_file,
            "architecture": config.architecture,
            "threshold": config.threshold,
            "made_at": status.get("finished_at"),
            "adopted_by": None,
        }
    ]


def current(screen_dir: str | Path) -> dict:
    """The current version: its scores file (always scores.csv) and the model that made it."""
    return versions(screen_dir)[-1]


def adopted_threshold(screen_dir: str | Path) -> decisions.Adopted | None:
    """The threshold people adopted for the current version's scores, or None: one adopted on an earlier version's
    scores (the version records the one in force when it was made) was a line on another model's probabilities."""
    adopted = decisions.adopted_threshold(screen_dir)
    replaced = current(screen_dir).get("replaced_threshold")
    return None if adopted is None or (replaced is not None and list(adopted) == replaced) else adopted


def usable_model(screen_dir: Path, run_dir: Path) -> tuple[LoadedModel, np.ndarray]:
    """The run's model and the job's stored features, when that model can score them: RunError in words for a job or
    run not completed, another architecture or backbone, or a head that does not read pooled features."""
    if runs.read_json(screen_dir / runs.STATUS).get("state") != "completed" or not (screen_dir / SCORES).is_file():
        raise runs.RunError(f"screening job {screen_dir.name} is not completed: finish it before adopting another model")
    description, stored = job_features.read_features(screen_dir)
    state = runs.read_run(run_dir).state
    if state != "completed":
        raise runs.RunError(f"run {run_dir.name} is {state}, not completed: only a completed run's model can score a job")
    loaded = load_model(run_dir)
    if loaded.arch != description.arch:
        raise runs.RunError(
            f"run {run_dir.name} is a {loaded.arch} model, but the photos of {screen_dir.name} were screened by a {description.arch}: "
            "its stored features do not fit; screen the sources again with that model"
        )
    if not isinstance(head(loaded.model, loaded.arch), torch.nn.Linear):  # SqueezeNet's head reads the unpooled map
        raise runs.RunError(f"a {loaded.arch} model's head is not one linear layer, so it cannot score the job's stored (pooled) features")
    if job_features.backbone_digest(loaded.model, loaded.arch) != description.backbone:
        raise runs.RunError(
            f"run {run_dir.name}'s backbone is not the one that screened {screen_dir.name} (it was trained beyond its head): the stored "
            "features do not fit; screen the sources again with that model"
        )
    return loaded, stored


def score_features(loaded: LoadedModel, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Each row's positive probability and novelty score from the model's head alone (NaN for rows with no features;
    novelty None without a summary of the model's training photos)."""
    layer = head(loaded.model, loaded.arch).to("cpu")
    probabilities = np.full(len(stored), np.nan, dtype=np.float64)
    unlike = None if loaded.novelty is None else np.full(len(stored), np.nan, dtype=np.float64)
    with torch.inference_mode(), loaded.lock:
        for start in range(0, len(stored), CHUNK):
            chunk = np.asarray(stored[start : start + CHUNK], dtype=np.float32)
            rows = np.flatnonzero(~np.isnan(chunk[:, 0]))
            if not len(rows):
                continue
            inputs = torch.from_numpy(chunk[rows])
            probabilities[start + rows] = positive_probabilities(layer(inputs)).numpy()
            if unlike is not None:
                unlike[start + rows] = novelty.score_tensor(loaded.novelty, inputs).numpy()
    return probabilities, unlike


def _rescored(screen_dir: Path, loaded: LoadedModel, probabilities: np.ndarray, unlike: np.ndarray | None) -> tuple[list[list], dict]:
    """scores.csv's rows with the new model's probability, label and novelty; and the counts the job list shows."""
    with open(screen_dir / SCORES, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != len(probabilities):
        raise runs.RunError(f"{screen_dir.name}'s {SCORES} has {len(rows):,} rows but its stored features {len(probabilities):,}: they do not belong together")
    out, flagged, flagged_photos = [], 0, set()
    for i, row in enumerate(rows):
        if not np.isnan(probabilities[i]):
            row["probability"] = f"{probabilities[i]:.6f}"
            row["label"] = loaded.label_for(float(probabilities[i]))
            row["unlike_training"] = "" if unlike is None else f"{unlike[i]:.4f}"
            if row["label"] == loaded.positive_class:
                flagged += 1
                flagged_photos.add(row["duplicate_group"])
        out.append([row[column] for column in SCORES_COLUMNS])
    return out, {"flagged": flagged, "flagged_photos": len(flagged_photos)}


def use_model(screen_dir: str | Path, run_dir: str | Path, person: str) -> dict:
    """Re-score the whole job with the run's model from its stored features, as a new version of its scores; returns
    the new version's entry of versions.json. `person`: who adopts it (on record)."""
    from wildvision.screening.job import model_version

    screen_dir, run_dir = Path(screen_dir), runs.resolve_run(run_dir, runs.default_runs_dir())
    if not person.strip():
        raise ValueError("no name: say who adopts the model")
    loaded, stored = usable_model(screen_dir, run_dir)
    probabilities, unlike = score_features(loaded, stored)
    rows, counts = _rescored(screen_dir, loaded, probabilities, unlike)
    history = versions(screen_dir)
    (screen_dir / VERSIONS_DIR).mkdir(exist_ok=True)
    kept = f"{VERSIONS_DIR}/v{history[-1]['version']}.csv"
    shutil.copyfile(screen_dir / SCORES, screen_dir / f"{kept}.tmp")
    os.replace(screen_dir / f"{kept}.tmp", screen_dir / kept)
    history[-1]["file"] = kept
    entry = {
        "version": history[-1]["version"] + 1,
        "file": SCORES,
        "model": str(run_dir.resolve()),
        "model_file": loaded.source,
        "architecture": loaded.arch,
        "threshold": loaded.threshold,
        "made_at": runs.now(),
        "adopted_by": person.strip(),
        "replaced_threshold": list(adopted) if (adopted := decisions.adopted_threshold(screen_dir)) else None,
    }
    write_rows(screen_dir / SCORES, SCORES_COLUMNS, rows)
    config = read_config(screen_dir)
    fields = {"model": entry["model"], "model_file": loaded.source, "model_version": model_version(loaded), "architecture": loaded.arch}
    write_config(screen_dir, dataclasses.replace(config, **fields, threshold=loaded.threshold, class_names=tuple(loaded.class_names)))
    status = runs.read_json(screen_dir / runs.STATUS)
    status["counts"] = (status.get("counts") or {}) | counts
    runs.write_json_atomic(screen_dir / runs.STATUS, status)
    runs.write_json_atomic(screen_dir / VERSIONS, history + [entry])
    return entry
