"""A new run beside the models it should beat, on the same test sets, before anyone uses it.

A run trained on a market's own photos can still flag worse than the shipped default model (one had 58% precision on
test_out_nopet against the default model's 88%), and nothing said so. So each run's process scores the run's own
test sets (its --test folders; not test_in, which is its own split and may hold photos the other model trained on)
with the default model and, when the run was started to replace a chosen model (TrainConfig.replaces), with that
model too, and keeps the numbers in comparison.json. A model's stored scores are reused instead when they come from
the very same folder with the same number of photos (the default model's on the demo data's test sets), so the cost
is at most one forward pass per photo of those sets per model, and nothing when they are the ones it was tested on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from wildvision import catalog, runs
from wildvision.data import Sample
from wildvision.evaluate import PAPER_THRESHOLD, compute_metrics, evaluate_samples
from wildvision.training.config import TrainConfig
from wildvision.wording import out_of_100, positive_words

log = logging.getLogger(__name__)

DEFAULT, REPLACED = "default", "replaced"
WORSE_BY = 0.01  # a difference in precision or F-score that counts as worse, not as noise in the second decimal
AT_THRESHOLD = ("threshold", "positive_precision", "positive_recall", "accuracy", "f_score", "confusion_matrix")


def baselines(config: TrainConfig) -> list[tuple[str, catalog.ModelRecord]]:
    """The models a run is compared with, each with its role: the default model where it is shipped, and the run
    it replaces where that is a completed run with a checkpoint."""
    chosen = []
    default = catalog.default_model()
    if default is not None:
        chosen.append((DEFAULT, default))
    if config.replaces:
        try:
            replaced = catalog.read_model(config.replaces)
        except runs.RunError as error:
            log.warning("not compared with the model it replaces: %s", error)
        else:
            if replaced.usable:
                chosen.append((REPLACED, replaced))
            else:
                log.warning("not compared with %s: it is %s, without a usable checkpoint", replaced.key, replaced.state)
    return chosen


def stored_scores_of(record: catalog.ModelRecord, stored: dict, folder: str | Path, photos: int) -> dict | None:
    """The model's stored scores (`stored`, its scores.json) of this very test set: one of its own test sets in the
    same folder, with as many scored photos as the run's set has photos; None when they are not kept or differ."""
    here = Path(folder).resolve()
    for name, own in catalog.test_folders(record).items():
        if own.resolve() == here and name in stored and len(stored[name]["labels"]) == photos:
            return stored[name]
    return None


@dataclass(frozen=True)
class Plan:
    """One model a run is compared with: its role, its record, the test sets whose photos it must score, and the
    stored scores reused for the others."""

    role: str
    record: catalog.ModelRecord
    to_score: dict[str, list[Sample]]
    reused: dict[str, dict]


def plans(config: TrainConfig, tests: Mapping[str, list[Sample]]) -> list[Plan]:
    """Per model compared with, what it must score and what is reused (its scores.json is read once)."""
    chosen = []
    for role, record in baselines(config):
        stored = catalog.stored_scores(record) or {}
        reused = {}
        for name, samples in tests.items():
            scores = stored_scores_of(record, stored, config.tests[name], len(samples))
            if scores is not None:
                reused[name] = scores
        chosen.append(Plan(role, record, {name: samples for name, samples in tests.items() if name not in reused}, reused))
    return chosen


def needed(config: TrainConfig, tests: Mapping[str, list[Sample]]) -> bool:
    """Whether a model the run is compared with must score photos (its stored scores of these sets cannot be reused)."""
    return photos_to_score(plans(config, tests)) > 0


def photos_to_score(chosen: list[Plan]) -> int:
    return sum(len(samples) for plan in chosen for samples in plan.to_score.values())


def _metrics(scores: dict, threshold: float) -> dict:
    """results.json's test-set entry from labels and probabilities: at 0.5 as the paper, and at the model's threshold."""
    metrics = compute_metrics(scores["labels"], scores["probabilities"], PAPER_THRESHOLD)
    at = compute_metrics(scores["labels"], scores["probabilities"], threshold)
    return metrics | {"at_threshold": {key: at[key] for key in AT_THRESHOLD}}


def compare(
    run_dir: Path,
    config: TrainConfig,
    tests: Mapping[str, list[Sample]],
    report: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Score the run's test sets with every model it is compared with (reusing stored scores of the same folders)
    and write comparison.json. `report(words, photos done, photos to do)` follows the scoring. Returns what it wrote."""
    from wildvision.predict import load_model

    chosen = plans(config, tests)
    total, done = photos_to_score(chosen), 0
    models = []
    for plan in chosen:
        role, record = plan.role, plan.record
        label = "the default model" if role == DEFAULT else f"the model it replaces ({record.key})"
        loaded = load_model(record.model, device=config.device) if plan.to_score else None
        sets = {}
        for name, samples in tests.items():
            if name in plan.reused:
                sets[name] = _metrics(plan.reused[name], record.threshold) | {"reused": True}
                continue
            words = f"scoring {name} with {label} for the comparison"
            progress = None if report is None else (lambda photos, words=words, offset=done: report(words, offset + photos, total))
            metrics, scores = evaluate_samples(
                loaded.model, samples, loaded.device, num_workers=config.num_workers, normalisation=loaded.normalisation, progress=progress
            )
            done += len(samples)
            sets[name] = _metrics(scores, loaded.threshold) | {"eval_time_s": metrics["eval_time_s"], "reused": False}
        models.append({"model": record.key, "role": role, "label": label, "threshold": record.threshold, "test_sets": sets})
    comparison = {"models": models, "photos_scored": total}
    runs.write_json_atomic(run_dir / runs.COMPARISON, comparison)
    return comparison


def _cell(result: catalog.Evaluation) -> str:
    precision = "not measured" if result.precision_at_threshold is None else f"{result.precision_at_threshold:.0%}"
    return f"precision {precision} · F-score {result.f_score:.2f}"


NOT_COMPARED = (
    "Not compared with the default model: the run has no test sets besides test_in (its own split, on which the other "
    "model may have trained), or it was trained before runs were compared."
)


def table(record: catalog.ModelRecord) -> tuple[pd.DataFrame | None, list[str], list[str]]:
    """The finished run beside the models it was compared with: a row per test set (photos, and for each model the
    positive-class precision at the model's own flagging line and the paper's F-score at 0.5), a sentence for each
    set where the run is worse, and notes (on reused numbers; or why there is no table, which is then None)."""
    compared = catalog.comparisons(record)
    names = [name for name in record.results if name != catalog.IN_DISTRIBUTION and any(name in c.results for c in compared)]
    if not names:
        return None, [], [NOT_COMPARED]
    rows, worse = [], []
    for name in names:
        ours = record.results[name]
        row = {"test set": name, "photos": ours.n_images, "this run": _cell(ours)}
        for other in compared:
            theirs = other.results.get(name)
            row[other.label] = _cell(theirs) if theirs else "not scored"
            sentence = worse_sentence(name, ours, theirs, other.label, record.positive) if theirs else None
            worse += [sentence] if sentence else []
        rows.append(row)
    notes = [
        f"The numbers of {other.label} on {', '.join(other.reused)} are its stored scores of the same folders, not scored again."
        for other in compared
        if other.reused
    ]
    return pd.DataFrame(rows), worse, notes


def worse_sentence(test_set: str, ours: catalog.Evaluation, theirs: catalog.Evaluation, label: str, positive: str) -> str | None:
    """A plain sentence when the run flags less precisely or has a lower F-score than the other model on a set."""
    parts = []
    ours_precision, theirs_precision = ours.precision_at_threshold, theirs.precision_at_threshold
    if ours_precision is not None and theirs_precision is not None and theirs_precision - ours_precision > WORSE_BY:
        parts.append(
            f"of every 100 photos it flags, {out_of_100(ours_precision)} really are {positive_words(positive)}, "
            f"against {out_of_100(theirs_precision)} for {label}"
        )
    if theirs.f_score - ours.f_score > WORSE_BY:
        parts.append(f"its F-score is {ours.f_score:.2f} against {theirs.f_score:.2f}")
    return f"On {test_set}, this run is worse than {label}: {'; '.join(parts)}." if parts else None
