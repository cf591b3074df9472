"""Honest estimates from a job's audit sample (audit.py): the precision of the flags at a line, their recall, how
many of the job's photos show trade, and F, each with a 95% interval.

Method. The sample's units fall in cells: stratum (at the first draw's line) x flagged at the line asked about
(post-stratification, so a line moved since the draw is handled). Point estimates are the usual stratified ones:
a stratum's N_h photos are weighted by the shares its decided units show (Horvitz-Thompson totals, ratios of them).
Intervals: each cell's trade share gets a Beta posterior with Jeffreys' prior, Beta(y + 1/2, n - y + 1/2); a
stratum's split between flagged and not (when the line cuts through it) gets one too; seeded Monte Carlo draws of
all of them (DRAWS) are combined into the totals and ratios, and the 2.5th and 97.5th percentiles are the interval.
Jeffreys' intervals keep close to their nominal coverage even at small counts and, unlike the normal approximation,
never collapse: a stratum where no trade was found still says that some may be there (its share's interval runs
from 0 to about 1.9/n). The draws carry each stratum's uncertainty into recall and F, which are ratios of sums
over strata where a formula would need a delta method. experiments/bench_audit.py measures the coverage.

Only decided units count: `unsure` says neither, and undecided units are assumed missing at random within their
stratum (the reason audit.to_decide lists them, so they get decided).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from wildvision.screening import audit
from wildvision.screening.decisions import UNSURE
from wildvision.screening.review import read_job

DRAWS = 20_000
SEED = 0
#: Fewer decided units than this, and the words say the estimates are too rough to act on.
MIN_DECIDED = 30


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class Estimates:
    """precision: the share of flagged units that show trade; recall: the share of the job's trade units that the
    line flags; prevalence: the share of the job's units that show trade, prevalence_count the same as a number of
    units; f_score: 2PR / (P + R). n: decided sample units (unsure left out); n_trade: those decided as trade."""

    precision: Interval
    recall: Interval
    prevalence: Interval
    prevalence_count: Interval
    f_score: Interval
    n: int
    n_trade: int
    units: str
    total: int
    line: float | None

    def to_json(self) -> dict:
        """precision, recall, prevalence (a count of units), prevalence_share and f_score, each {estimate, low,
        high} (null where it cannot be estimated: precision when the line flags no sampled unit, recall when no
        trade was found); n, n_trade, units, total, line."""

        def plain(interval: Interval) -> dict:  # an estimate that cannot be made is null, as JSON has no NaN
            return {name: None if math.isnan(value) else value for name, value in asdict(interval).items()}

        out = {name: plain(getattr(self, name)) for name in ("precision", "recall", "f_score")}
        out["prevalence"] = plain(self.prevalence_count)
        out["prevalence_share"] = plain(self.prevalence)
        return {**out, "n": self.n, "n_trade": self.n_trade, "units": self.units, "total": self.total, "line": self.line}


def _interval(point: float, draws: np.ndarray) -> Interval:
    finite = draws[np.isfinite(draws)]
    if not finite.size or not math.isfinite(point):
        return Interval(math.nan, math.nan, math.nan)
    low, high = np.percentile(finite, [2.5, 97.5])
    return Interval(float(point), float(min(low, point)), float(max(high, point)))


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


def estimate(
    sample: pd.DataFrame,
    is_trade: Mapping[str, bool],
    flagged: Mapping[str, bool],
    total_units: int,
    line: float | None = None,
    units: str = audit.UNIT,
    seed: int = SEED,
) -> Estimates:
    """The estimates from an audit `sample` (audit.sample's columns path, stratum, stratum_size), the units' decisions
    (`is_trade`: decided units only, unsure left out) and whether the line flags each sampled unit (`flagged`).
    `total_units`: the units the strata hold together. Pure: any model's flags can be measured on the same audit."""
    rng = np.random.default_rng(seed)
    trade_point, trade_draws = 0.0, np.zeros(DRAWS)
    hit_point, hit_draws = 0.0, np.zeros(DRAWS)
    flag_point, flag_draws = 0.0, np.zeros(DRAWS)
    n = n_trade = 0
    for _, rows in sample.groupby("stratum"):
        size = int(rows["stratum_size"].iloc[0])
        flags = rows["path"].map(lambda p: bool(flagged[p])).to_numpy()
        m1, m0 = int(flags.sum()), int((~flags).sum())
        share_point = m1 / (m1 + m0)
        share = rng.beta(m1 + 0.5, m0 + 0.5, DRAWS) if m1 and m0 else np.full(DRAWS, share_point)
        for is_flagged, cell_share, cell_point in ((True, share, share_point), (False, 1 - share, 1 - share_point)):
            cell = rows[flags == is_flagged]
            if not len(cell) or cell_point == 0:
                continue
            decided = [bool(is_trade[p]) for p in cell["path"] if p in is_trade]
            y, k = sum(decided), len(decided)
            n, n_trade = n + k, n_trade + y
            p_point = y / k if k else 0.5  # a cell nobody decided yet: Jeffreys' prior mean, its interval 0 to 1
            p_draws = rng.beta(y + 0.5, k - y + 0.5, DRAWS)
            trade = size * cell_point * p_point
            draws = size * cell_share * p_draws
            trade_point, trade_draws = trade_point + trade, trade_draws + draws
            if is_flagged:
                hit_point, hit_draws = hit_point + trade, hit_draws + draws
                flag_point, flag_draws = flag_point + size * cell_point, flag_draws + size * cell_share
    precision = (_ratio(hit_point, flag_point), _ratio(hit_draws, flag_draws)) if flag_point else (math.nan, np.full(DRAWS, math.nan))
    recall = (_ratio(hit_point, trade_point) if trade_point else math.nan, _ratio(hit_draws, trade_draws))
    f_point = _ratio(2 * precision[0] * recall[0], precision[0] + recall[0]) if n_trade else math.nan
    f_draws = _ratio(2 * precision[1] * recall[1], precision[1] + recall[1])
    return Estimates(
        precision=_interval(float(precision[0]), precision[1]),
        recall=_interval(float(recall[0]), recall[1]),
        prevalence=_interval(trade_point / total_units, trade_draws / total_units),
        prevalence_count=_interval(trade_point, trade_draws),
        f_score=_interval(float(f_point), f_draws),
        n=n,
        n_trade=n_trade,
        units=units,
        total=total_units,
        line=line,
    )


def _job_inputs(screen_dir: str | Path) -> tuple[pd.DataFrame, dict[str, bool]] | None:
    """The job's audit sample and its units' decisions as trade or not (unsure and undecided left out)."""
    frame = audit.sample(screen_dir)
    if frame is None:
        return None
    positive = read_job(screen_dir).positive
    decided = frame[(frame["decision"] != "") & (frame["decision"] != UNSURE)]
    return frame, dict(zip(decided["path"], decided["decision"] == positive))


def job_estimates(screen_dir: str | Path, line: float | None = None) -> Estimates | None:
    """The estimates for the job's flags at `line` (default: the job's current line) from its audit sample; None
    when the job has no sample."""
    found = _job_inputs(screen_dir)
    if found is None:
        return None
    frame, is_trade = found
    line = read_job(screen_dir).threshold if line is None else line
    flagged = dict(zip(frame["path"], frame["score"] >= line))
    design = audit.design(screen_dir)
    return estimate(frame, is_trade, flagged, sum(design["sizes"].values()), line, units=audit.UNIT_WORDS[design["unit"]])


@dataclass(frozen=True)
class LineForTarget:
    """The lowest line whose precision's lower bound reaches the target (None with the reason when none does)."""

    line: float | None
    reason: str
    estimates: Estimates | None


def line_for_target(sample: pd.DataFrame, is_trade: Mapping[str, bool], total_units: int, target_precision: float, units: str = audit.UNIT) -> LineForTarget:
    """The lowest line, among the decided units' scores (`sample`'s score column), at which the precision's 95%
    LOWER bound reaches `target_precision`: the honest choice, since a point estimate reaches a target by luck half
    the time."""
    decided = sample[sample["path"].isin(list(is_trade))]
    if len(decided) < MIN_DECIDED or not any(is_trade.values()):
        return LineForTarget(
            None, f"only {len(decided)} sampled units are decided ({sum(is_trade.values())} as trade): decide at least {MIN_DECIDED}, some of them trade", None
        )
    for line in sorted(set(decided["score"])):
        found = estimate(sample, is_trade, dict(zip(sample["path"], sample["score"] >= line)), total_units, line, units=units)
        if found.precision.low >= target_precision:
            return LineForTarget(line, f"the lowest line whose precision is at least {target_precision:.0%} with 95% confidence", found)
    return LineForTarget(None, f"no line reaches {target_precision:.0%} precision with 95% confidence on this audit: decide more sampled photos", None)


def job_line_for_target(screen_dir: str | Path, target_precision: float) -> LineForTarget:
    """line_for_target on the job's audit sample."""
    found = _job_inputs(screen_dir)
    if found is None:
        return LineForTarget(None, "the job has no audit sample yet", None)
    frame, is_trade = found
    design = audit.design(screen_dir)
    return line_for_target(frame, is_trade, sum(design["sizes"].values()), target_precision, units=audit.UNIT_WORDS[design["unit"]])


def interval_words(interval: Interval, count: bool = False, decimals: bool = False) -> tuple[str, str]:
    """An estimate and its 95% interval as the pages and reports print them: a share in percent, a `count` of units,
    or a number with two `decimals` (an F-score); ("cannot be measured yet", "") where there is no estimate."""
    if math.isnan(interval.estimate):
        return "cannot be measured yet", ""
    if decimals:
        return f"{interval.estimate:.2f}", f"{interval.low:.2f} to {interval.high:.2f}"
    if count:
        return f"{interval.estimate:,.0f}", f"{interval.low:,.0f} to {interval.high:,.0f}"
    return f"{interval.estimate:.0%}", f"{interval.low:.0%} to {interval.high:.0%}"


def _share(interval: Interval) -> tuple[str, str]:
    """A share in words and its interval in brackets."""
    return f"{interval.estimate:.0%}", f"({interval.low:.0%} to {interval.high:.0%})"


def in_words(estimates: Estimates) -> list[str]:
    """Plain sentences for the people acting on the estimates; too few decisions are said to be too few."""
    e, units = estimates, estimates.units
    source = f"From {e.n:,} {units} chosen at random and decided ({e.n_trade:,} of them trade; unsure ones left out)."
    if e.n < MIN_DECIDED:
        return [f"Only {e.n:,} {units} of the audit sample are decided: too few for an estimate worth acting on. Decide at least {MIN_DECIDED}.", source]
    count = e.prevalence_count
    words = [f"About {count.estimate:,.0f} of these {e.total:,} {units} show trade ({count.low:,.0f} to {count.high:,.0f})."]
    if e.n_trade == 0:
        words.append("No trade was found among the decided photos, so how much the line catches cannot be measured yet.")
    else:
        share, bounds = _share(e.recall)
        words.append(f"The line catches about {share} of them {bounds}.")
    if math.isnan(e.precision.estimate):
        words.append("The line flags none of the decided photos, so the precision of its flags cannot be measured.")
    else:
        share, bounds = _share(e.precision)
        words.append(f"Of the {units} it flags, about {share} show trade {bounds}.")
    return [*words, source]
