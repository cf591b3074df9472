"""The numbers reported by Kulkarni & Di Minin (2022), arXiv:2205.11324.

Why this module exists: every experiment we run is meant to be compared with
the paper, so the paper's tables are shipped as data (``paper_results.csv``,
next to this file) instead of being retyped in notebooks or parsed from the
paper at run time (the paper text lives outside the package and may be absent).

The CSV is a literal transcription: each ``value`` is the string printed in
the paper (``"94.40"``, ``"6.5"``), in tidy long format with columns
``model, regime, dataset, test_set, metric, value, source``:

* ``model``: our registry names (paper's ``squeezenet`` -> ``squeezenet1_0``,
  ``vgg11bn``/``VGG11`` -> ``vgg11_bn``, ``vgg19bn``/``VGG19`` -> ``vgg19_bn``).
  Table S4's counts equal torchvision's totals for these exact variants with a
  2-class head, which confirms the mapping.
* ``regime``: ``transfer`` (the paper's plain rows, "fine-tune"), ``scratch``
  (rows ending "scratch"/"scratch_train"), ``combi`` ("combi"/"combi_train").
* ``dataset``: ``bg`` (rows labelled *test_bg*: trained on *data_bg*) or ``no_bg``.
* ``test_set``: ``test_in`` (Table S1), ``test_out_pet`` (Table S2),
  ``test_out_nopet`` (Table S3); Table 1 covers both out-of-distribution sets,
  all for ``dataset == "bg"``.
* ``metric``: ``accuracy`` (printed in percent), ``f_score``, ``precision``,
  ``recall``, ``epoch_time_min`` and ``best_epoch`` (S1), ``eval_time_min``
  (S2, S3), ``positive_precision`` (Table 1), ``params`` (Table S4; those rows
  have empty regime, dataset and test_set).

Caveats about the source, kept here so nobody "fixes" the data:

* Table S3's column header reads "epoch time (min)", but its caption says
  "'eval time' is the time to complete the evaluation on the full test
  dataset", and its values (0.53-0.96 min) match Table S2's eval times, not
  Table S1's epoch times (5.56-8.85 min). It is stored as ``eval_time_min``.
* The results prose (Section 3.1) quotes the means of Table S2 (captioned
  *test_out_pet*) as *test_out_nopet* and vice versa; we follow the captions.
* Section 3.3 says the gain was computed on *test_in*, but on *test_in*
  squeezenet is not the lowest-scoring model and densenet121's gain is
  negative; only the out-of-distribution sets reproduce the reported
  "densenet121 has the highest gain".
* Table S4 is titled "trainable parameters" but gives each model's total
  parameter count, not the head-only count that is trained under ``transfer``.

Two supplementary tables describe the data rather than results, and are
shipped as their own CSVs, also transcribed as printed (``species_table()``
and ``background_queries()`` load them):

* ``paper_species.csv`` is Table S7, the species listed for sale in the
  positive class (whose wild photos from iNaturalist form the negative class),
  columns ``scientific_name, cites_appendix``. The paper prints it as two
  side-by-side pairs of those columns (29 lines, 58 entries, alphabetical
  down the left pair, then down the right); the CSV has one row per entry in
  that alphabetical order, without the paper's italics. It has no common
  names. Caveats: *Nasua narica* is printed twice (consecutive lines of the
  right pair, both "III"), so the 58 entries the text counts as "58 species"
  name 57 distinct taxa; both rows are kept. *Cynomys* is a genus and *Mustela
  putorius furo* a subspecies. The paper does not define its appendix codes:
  "NA" is printed where a species is not listed ("CITES appendix is mentioned
  if the species is listed"), "/" joins several appendices for a species
  whose populations are listed differently, and "NC" (only in "I/II/III/NC"
  and "III/NC") reads as CITES' own "non-CITES" for the remaining populations.
  The values were not checked against CITES' current listings.
* ``paper_background_queries.csv`` is Table S8, the 22 Google Images search
  queries for the background images of *data_bg*, one column ``query``, in
  the paper's order and spelling ("carboard boxes in house" is the paper's).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from decimal import Decimal
from importlib import resources

import pandas as pd

RESULTS_FILE = "paper_results.csv"
COLUMNS = ("model", "regime", "dataset", "test_set", "metric", "value", "source")
SPECIES_FILE = "paper_species.csv"
SPECIES_COLUMNS = ("scientific_name", "cites_appendix")
BACKGROUND_QUERIES_FILE = "paper_background_queries.csv"
BACKGROUND_QUERIES_COLUMNS = ("query",)
#: Table S7's CITES codes: "NA" alone (not listed), or appendices joined by "/" (e.g. "I/II", "III/NC").
CITES_NOT_LISTED = "NA"
CITES_APPENDICES = ("I", "II", "III", "NC")
GAIN_COLUMNS = ("model", "f_score", "params", "gain")

#: Section 3.3 uses squeezenet as the baseline: fewest parameters, lowest f-score.
BASELINE = "squeezenet1_0"
REGIMES = ("transfer", "scratch", "combi")
DATASETS = ("bg", "no_bg")
TEST_SETS = ("test_in", "test_out_pet", "test_out_nopet")


@functools.lru_cache(maxsize=1)
def _raw_rows() -> tuple[dict[str, str], ...]:
    """Rows of the CSV as printed strings, read once.

    Read with the csv module (not pandas) so that the constants below do not
    depend on pandas' type inference, and through importlib.resources so it
    works from a checkout and from an installed wheel alike.
    """
    text = resources.files(__package__).joinpath(RESULTS_FILE).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{RESULTS_FILE} has columns {reader.fieldnames}, expected {list(COLUMNS)}")
    return tuple(reader)


@functools.lru_cache(maxsize=2)
def _text_table(filename: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A shipped CSV of printed strings, read once; every column stays a string.

    keep_default_na=False keeps Table S7's "NA" (not listed in CITES) as the
    string the paper prints instead of turning it into a missing value.
    """
    text = resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if tuple(frame.columns) != columns:
        raise ValueError(f"{filename} has columns {list(frame.columns)}, expected {list(columns)}")
    return frame


def species_table() -> pd.DataFrame:
    """Table S7: the 58 species entries found for sale in the positive class, with their CITES appendix.

    These are the species whose wild photos (iNaturalist, research grade) make
    up the negative class, so that the models cannot flag an image by species
    alone. One row per entry, in the paper's alphabetical order; all strings:

    * ``scientific_name``: as printed, without the italics ("Canis lupus";
      "Cynomys" is a genus, "Mustela putorius furo" a subspecies). "Nasua
      narica" is printed twice and appears twice.
    * ``cites_appendix``: as printed. ``"NA"`` (``CITES_NOT_LISTED``) when
      the species is not listed in CITES; otherwise one or more of
      ``CITES_APPENDICES`` joined by "/" when populations are listed in
      different appendices ("I/II"; "NC", never alone, is the populations
      not covered by CITES).

    A new copy each call, so callers may modify it.
    """
    return _text_table(SPECIES_FILE, SPECIES_COLUMNS).copy(deep=True)


def background_queries() -> pd.DataFrame:
    """Table S8: the 22 Google Images search queries for background objects.

    Their results (705 images of objects seen behind animals for sale: cages,
    sofas, hands...) were added to the negative class to make *data_bg*. One
    column, ``query``: the search string exactly as printed, in the paper's
    order (spelling included: "carboard boxes in house").

    A new copy each call, so callers may modify it.
    """
    return _text_table(BACKGROUND_QUERIES_FILE, BACKGROUND_QUERIES_COLUMNS).copy(deep=True)


def _to_float(metric: str, printed: str) -> float:
    """The printed string as a float; accuracy goes from percent to a fraction.

    Decimal shifts the point exactly, so "94.86" becomes the float nearest to
    0.9486 rather than 94.86 / 100 with its rounding error.
    """
    number = Decimal(printed)
    if metric == "accuracy":
        number = number.scaleb(-2)
    return float(number)


@functools.lru_cache(maxsize=1)
def _reference_frame() -> pd.DataFrame:
    rows = _raw_rows()
    frame = pd.DataFrame({column: [row[column] or None for row in rows] for column in ("model", "regime", "dataset", "test_set", "metric")})
    frame["value"] = [_to_float(row["metric"], row["value"]) for row in rows]
    frame["source"] = [row["source"] for row in rows]
    return frame


def reference_results() -> pd.DataFrame:
    """All of the paper's reported numbers, one row per value.

    Columns: model, regime, dataset, test_set, metric, value (float), source.
    Accuracy is converted from the paper's percent (94.86) to a fraction
    (0.9486) so it can be compared directly with our own runs, whose metrics
    are fractions; every other metric is as printed. Table S4 rows
    (metric ``params``) have missing regime, dataset and test_set.

    The table is parsed once and cached; each call returns a copy so callers
    may modify it freely without corrupting the cache.
    """
    return _reference_frame().copy(deep=True)


def paper_parameter_counts() -> dict[str, int]:
    """Table S4: parameter count per architecture (registry names).

    A new dict each call, so mutating it cannot change later results.
    """
    return {row["model"]: int(row["value"]) for row in _raw_rows() if row["metric"] == "params"}


#: Table S4 in registry names; prefer ``paper_parameter_counts()`` if you need to mutate it.
PAPER_PARAMETER_COUNTS: dict[str, int] = paper_parameter_counts()


def efficiency_gain(
    f_scores: Mapping[str, float],
    parameter_counts: Mapping[str, int],
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """Section 3.3's "gain": f-score gained per parameter added over a baseline.

    gain = (F_model - F_baseline) / (params_model - params_baseline)

    It asks whether a larger architecture pays for its size: a small model
    with a modest f-score improvement can beat a huge one with a larger
    improvement. Returns one row per model in ``f_scores`` (columns model,
    f_score, params, gain), highest gain first; the baseline itself is left
    out because its gain is 0/0. ``parameter_counts`` may hold extra models.

    Raises ValueError if the baseline is missing from either mapping (there is
    nothing to measure against), if a model has no parameter count, or if a
    model has as many parameters as the baseline (gain undefined).
    """
    missing_from = [name for name, mapping in (("f_scores", f_scores), ("parameter_counts", parameter_counts)) if baseline not in mapping]
    if missing_from:
        raise ValueError(
            f"baseline {baseline!r} is missing from {' and '.join(missing_from)}; the gain is "
            f"measured relative to it. f_scores has {sorted(f_scores)}, "
            f"parameter_counts has {sorted(parameter_counts)}"
        )
    uncounted = sorted(set(f_scores) - set(parameter_counts))
    if uncounted:
        raise ValueError(f"no parameter count for {uncounted}; parameter_counts has {sorted(parameter_counts)}")

    base_f = float(f_scores[baseline])
    base_params = int(parameter_counts[baseline])
    rows = []
    for model, f_score in f_scores.items():
        if model == baseline:
            continue
        params = int(parameter_counts[model])
        extra = params - base_params
        if extra == 0:
            raise ValueError(f"{model!r} has as many parameters as the baseline {baseline!r} ({params}); gain is undefined")
        rows.append((model, float(f_score), params, (float(f_score) - base_f) / extra))

    frame = pd.DataFrame(rows, columns=list(GAIN_COLUMNS)).astype({"f_score": "float64", "params": "int64", "gain": "float64"})
    return frame.sort_values("gain", ascending=False, kind="stable").reset_index(drop=True)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")


def paper_gain(test_set: str, dataset: str, regime: str, baseline: str = BASELINE) -> pd.DataFrame:
    """Section 3.3's gain recomputed from the paper's own f-scores and Table S4.

    Lets us check our reading of the gain formula against the paper's claim
    (densenet121 has the highest gain) and compare it with the gain of our
    own runs. See ``efficiency_gain`` for the columns.

    Raises ValueError, listing the valid choices, for an unknown argument, for
    a selection the paper did not report (scratch and combi were only trained
    on ``bg``), or when the selection lacks the baseline (scratch and combi
    were only run for densenet121/201 and vgg11_bn/vgg19_bn, so there is no
    squeezenet1_0 to measure against).
    """
    _check_choice("test_set", test_set, TEST_SETS)
    _check_choice("dataset", dataset, DATASETS)
    _check_choice("regime", regime, REGIMES)
    return gain_from_results(_reference_frame(), test_set, dataset, regime, paper_parameter_counts(), "the paper", baseline)


def gain_from_results(
    results: pd.DataFrame,
    test_set: str,
    dataset: str,
    regime: str,
    parameter_counts: Mapping[str, int],
    source: str,
    baseline: str = BASELINE,
) -> pd.DataFrame:
    """The gain over any tidy results table (the paper's or our runs'), for one test set, dataset and regime.

    `results` has the columns of ``reference_results()``; where a model has
    several f-scores for the selection (repeated runs), the first is used, so
    pass runs newest first. `source` names the results in error messages.
    """
    f_rows = results[results["metric"] == "f_score"]
    selected = f_rows[(f_rows["test_set"] == test_set) & (f_rows["dataset"] == dataset) & (f_rows["regime"] == regime)].drop_duplicates("model")
    if selected.empty:
        reported = sorted({(r.test_set, r.dataset, r.regime) for r in f_rows.itertuples()})
        raise ValueError(
            f"{source} has no f-scores for test_set={test_set!r}, dataset={dataset!r}, "
            f"regime={regime!r}; valid (test_set, dataset, regime) choices are {reported}"
        )
    f_scores = dict(zip(selected["model"], selected["value"]))
    if baseline not in f_scores:
        with_baseline = sorted(set(f_rows.loc[f_rows["model"] == baseline, "regime"]))
        raise ValueError(
            f"{source} has no {baseline!r} f-score for regime={regime!r}, dataset={dataset!r} "
            f"(models: {sorted(f_scores)}), so the gain over the baseline is undefined; "
            f"regimes that include the baseline: {with_baseline}"
        )
    return efficiency_gain(f_scores, parameter_counts, baseline)
