"""Efficiency: F-score gained per extra parameter over SqueezeNet (the paper's Section 3.3, Fig 3), and measured speed."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import pandas as pd

from wildvision import catalog, paper
from wildvision.analysis.export import format_gain, format_value
from wildvision.analysis.tidy import ORIGINS, PAPER, model_rank


class EfficiencyUnavailable(ValueError):
    """The gain cannot be computed for a selection; the message says why in plain words."""


@functools.cache
def _counted_parameters(arch: str) -> int:
    from wildvision.models import count_parameters

    return count_parameters(arch)


def parameter_counts(origin: str, models: Iterable[str]) -> dict[str, int]:
    """Parameter counts to weigh F against: the paper's Table S4 for the paper's numbers, our own
    registry's count (``models.count_parameters``, same 2-class head) for own runs."""
    if origin == PAPER:
        return paper.paper_parameter_counts()
    counts = {}
    for model in set(models):
        try:
            counts[model] = _counted_parameters(model)
        except ValueError:  # an architecture this version of the registry does not know: no count, no gain
            continue
    return counts


def _check_origin(origin: str) -> None:
    if origin not in ORIGINS:
        raise ValueError(f"origin={origin!r} is not one of {list(ORIGINS)}")


def efficiency_points(frame: pd.DataFrame, origin: str, test_set: str, dataset: str, regime: str) -> pd.DataFrame:
    """F-score and parameter count per model for one selection, baseline included (for the scatter).

    Columns: model, f_score, params, source. Where a model has several own runs, the first in the
    frame is used (runs are newest first), as in ``paper.gain_from_results``; ``source`` names it.
    """
    _check_origin(origin)
    rows = _f_scores(frame, origin, test_set, dataset)
    rows = rows[rows["regime"] == regime].drop_duplicates("model")
    counts = parameter_counts(origin, rows["model"]) if not rows.empty else {}
    points = pd.DataFrame(
        {
            "model": rows["model"].to_numpy(),
            "f_score": rows["value"].to_numpy(dtype="float64"),
            "params": pd.array([counts.get(m) for m in rows["model"]], dtype="Int64"),
            "source": rows["source"].to_numpy(),
        }
    )
    points["_rank"] = [model_rank(m) for m in points["model"]]
    return points.sort_values("_rank").drop(columns="_rank").reset_index(drop=True)


def efficiency_table(
    frame: pd.DataFrame,
    origin: str,
    test_set: str,
    dataset: str,
    regime: str,
    baseline: str = paper.BASELINE,
) -> pd.DataFrame:
    """Section 3.3's gain over SqueezeNet for one selection of the paper's numbers or own runs.

    Wraps ``paper.gain_from_results`` with the right parameter counts (Table S4 for the paper, the
    registry's count for runs). Columns: rank, model, f_score, params, extra_params, gain (F per
    extra parameter), gain_per_million, source; highest gain first, baseline left out.

    Raises ``EfficiencyUnavailable`` (a ValueError) with a plain message when the selection has no
    F-scores or no SqueezeNet baseline (the paper ran scratch and combi without SqueezeNet), so a
    page can show the message instead of a traceback.
    """
    points = efficiency_points(frame, origin, test_set, dataset, regime)
    who = "the paper reports" if origin == PAPER else "your completed runs have"
    what = f"test set {test_set}, dataset {dataset}, regime {regime}"
    if points.empty:
        raise EfficiencyUnavailable(f"No F-scores for {what}: {who} none for this combination.")
    if baseline not in set(points["model"]):
        with_baseline = _regimes_with(frame, origin, baseline, test_set, dataset)
        raise EfficiencyUnavailable(
            f"No {baseline} (SqueezeNet) baseline for {what}, so the gain over it is undefined: "
            f"{who} SqueezeNet F-scores here only for "
            f"{'the ' + with_baseline + ' regime' if with_baseline else 'no regime'}. "
            f"Models in this selection: {', '.join(points['model'])}."
        )
    selection = frame[frame["origin"] == origin]
    counts = parameter_counts(origin, points["model"])
    label = "the paper" if origin == PAPER else "own runs"
    try:
        gains = paper.gain_from_results(selection, test_set, dataset, regime, counts, label, baseline)
    except ValueError as error:  # e.g. two architectures with equal parameter counts
        raise EfficiencyUnavailable(str(error)) from error
    base_params = counts[baseline]
    gains["extra_params"] = gains["params"] - base_params
    gains["gain_per_million"] = gains["gain"] * 1e6
    gains["source"] = gains["model"].map(dict(zip(points["model"], points["source"])))
    gains.insert(0, "rank", range(1, len(gains) + 1))
    return gains[["rank", "model", "f_score", "params", "extra_params", "gain", "gain_per_million", "source"]]


def gain_headline(gains: pd.DataFrame, baseline_f: float, selection: str, baseline: str = paper.BASELINE) -> str:
    """One Markdown sentence on an ``efficiency_table``: which architecture gains most per extra parameter,
    or, plainly, that none beats SqueezeNet (every larger model's F-score at or below its ``baseline_f``)."""
    if gains.empty:
        return f"Only {baseline} itself has an F-score for {selection}: there is nothing to rank against it."
    best = gains.iloc[0]
    model, f, gain = best["model"], format_value(best["f_score"]), format_gain(best["gain_per_million"])
    base = format_value(baseline_f)
    if best["gain"] > 0:
        return (
            f"**{model}** has the highest gain for {selection}: {gain} F-score per million parameters beyond "
            f"SqueezeNet's (F-score {f} against SqueezeNet's {base})."
        )
    if best["gain"] == 0:
        tied = ", ".join(gains.loc[gains["gain"] == 0, "model"])
        return (
            f"**No architecture beats SqueezeNet** for {selection}: the best ({tied}) only equal its F-score of {base}, "
            "so their extra parameters gain nothing; all others score lower."
        )
    return (
        f"**No architecture beats SqueezeNet** for {selection}: every larger model has a lower F-score than its {base}, "
        f"so every gain is negative; the smallest loss is {model}'s ({f}, {gain} per million extra parameters)."
    )


def _f_scores(frame: pd.DataFrame, origin: str, test_set: str, dataset: str) -> pd.DataFrame:
    return frame[(frame["origin"] == origin) & (frame["metric"] == "f_score") & (frame["test_set"] == test_set) & (frame["dataset"] == dataset)]


def _regimes_with(frame: pd.DataFrame, origin: str, model: str, test_set: str, dataset: str) -> str:
    rows = _f_scores(frame, origin, test_set, dataset)
    rows = rows[rows["model"] == model]
    return ", ".join(r for r in paper.REGIMES if r in set(rows["regime"]))


def inference_times(records: Iterable[catalog.ModelRecord]) -> pd.DataFrame:
    """Measured evaluation time per image of own completed runs, with the F-score on the same set.

    Each run records, per test set, the wall time of the whole evaluation (loading and decoding the images
    included) and the number of images; their ratio is what a user waits per photo on that machine. Columns:
    source, model, regime, dataset, test_set, n_images, eval_time_s, seconds_per_image, images_per_second, f_score.
    """
    rows = [
        {
            "source": r.key,
            "model": r.arch,
            "regime": r.regime,
            "dataset": r.dataset,
            "test_set": name,
            "n_images": result.n_images,
            "eval_time_s": result.eval_time_s,
            "seconds_per_image": result.seconds_per_image,
            "images_per_second": result.n_images / result.eval_time_s if result.eval_time_s else math.inf,
            "f_score": result.f_score,
        }
        for r in records
        if not r.is_default and r.state == "completed"
        for name, result in r.results.items()
        if result.n_images and result.eval_time_s is not None
    ]
    columns = ["source", "model", "regime", "dataset", "test_set", "n_images", "eval_time_s", "seconds_per_image", "images_per_second", "f_score"]
    return pd.DataFrame(rows, columns=columns)
