"""Every model wildvision knows, the shipped default model and each run, as one typed record.

Home, the pages, the command line and the worker all ask the same question: which models are there, trained on
what, with which numbers, and how far to trust them? This module answers it once. It reads run folders through
``runs`` and the default model's card through ``model_card``; nothing else reads results.json, comparison.json,
config.json or split.json keys, so a change to those files is made here and nowhere else.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import pandas as pd

from wildvision import model_card, paper, runs, shared, wording

DEFAULT_KEY = model_card.DEFAULT_NAME
IN_DISTRIBUTION = "test_in"
#: Metrics at 0.5, weighted over both classes as in the paper's Tables S1-S3 (positive_precision is Table 1's).
RESULT_METRICS = ("accuracy", "f_score", "precision", "recall", "positive_precision")
DEMO_DATA_MARK = "demo-data"
TIDY_COLUMNS = ("model", "regime", "dataset", "test_set", "metric", "value", "source", "origin", "data", "demo")
RUN = "run"


@dataclass(frozen=True)
class Evaluation:
    """A model's numbers on one test set: at 0.5 as the paper reports them, and at the model's own threshold."""

    n_images: int
    accuracy: float
    f_score: float
    precision: float
    recall: float
    positive_precision: float
    precision_at_threshold: float | None = None  # of the positive class, at the model's decision threshold
    recall_at_threshold: float | None = None
    confusion: list[list[int]] | None = None  # [[TN, FP], [FN, TP]] at 0.5, positive class second
    confusion_at_threshold: list[list[int]] | None = None
    eval_time_s: float | None = None  # wall time of the whole evaluation, decoding included

    @property
    def seconds_per_image(self) -> float:
        """Measured latency: what a user waits per photo on the machine that evaluated it (NaN if not recorded)."""
        return self.eval_time_s / self.n_images if self.eval_time_s is not None and self.n_images else math.nan

    def metric(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class ModelRecord:
    """One model as every part of wildvision describes it. `key` is "default" or the run folder's name."""

    key: str
    arch: str
    regime: str
    dataset: str  # "bg" (trained with background images) or "no_bg"
    positive: str  # the positive class's name
    data: str  # what it trained on, in words: a folder, and where its photos link to
    demo: bool  # trained on the demo proxy (pets in listings), never the paper's data
    state: str  # the run's state; "completed" for the default model
    results: dict[str, Evaluation] = field(default_factory=dict)  # test_in first, then the paper's sets, then others
    threshold: float | None = None  # the decision threshold chosen on test_in; None when not recorded
    target_precision: float | None = None  # what the threshold was chosen for
    params: int | None = None
    n_train: int | None = None
    learning_rate: float | None = None  # the run's override; None: Table S5's for its regime
    epoch: int | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    message: str = ""  # the run's last status message
    hint: str | None = None  # its advice's reason code (wording.HINTS)
    path: Path | None = None  # the run folder, or the default model's folder
    checkpoint: Path | None = None  # the file the network is rebuilt from
    config: dict = field(default_factory=dict, repr=False)  # the run's config.json, shown whole on the Results page
    problem: str | None = None  # why its files could not be read; its numbers are then left out

    @property
    def is_default(self) -> bool:
        return self.key == DEFAULT_KEY

    @property
    def usable(self) -> bool:
        """Whether it can predict: a completed run with its checkpoint, or the default model."""
        return self.state == "completed" and self.problem is None and self.checkpoint is not None and self.checkpoint.is_file()

    @property
    def has_scores(self) -> bool:
        """Whether its test images' scores are kept (see stored_scores), so its threshold can be moved and costed."""
        return self.threshold is not None and self.path is not None and (self.path / runs.SCORES).is_file()

    @property
    def model(self) -> str:
        """What predict.load_model takes for it."""
        return DEFAULT_KEY if self.is_default else str(self.checkpoint)

    @property
    def description(self) -> str:
        """Architecture, regime and training dataset in words: "resnet18, transfer training, with background images"."""
        with_or_without = "with" if self.dataset == "bg" else "without"
        return f"{self.arch}, {self.regime} training, {with_or_without} background images"

    @property
    def trained_on(self) -> str:
        """Where its training photos came from, in a sentence."""
        if self.is_default:
            return "Trained on the demo proxy data shipped beside wildvision."
        count = f"{self.n_train:,} photos" if self.n_train else "photos"
        return f"Trained on {count} from `{self.data}`."

    @property
    def trust(self) -> list[str]:
        """How far to trust it, one plain sentence per test set measured at its threshold; other websites' photos first."""
        measured = {name: r for name, r in self.results.items() if r.precision_at_threshold is not None and r.recall_at_threshold is not None}
        order = sorted(measured, key=lambda name: (name == IN_DISTRIBUTION, name))
        sentences = [wording.trust_sentence(name, measured[name].precision_at_threshold, measured[name].recall_at_threshold, self.positive) for name in order]
        return sentences or [wording.NO_TRUST_NUMBERS]


def test_set_order(test_sets: Iterable[str]) -> list[str]:
    """The paper's three test sets first (test_in, test_out_pet, test_out_nopet), then others by name."""
    present = set(test_sets)
    return [t for t in paper.TEST_SETS if t in present] + sorted(present - set(paper.TEST_SETS))


def is_demo_data(path: str | Path) -> bool:
    """Whether a path lies in the shipped demo data: a cats-and-dogs proxy, never the paper's data."""
    return DEMO_DATA_MARK in str(path)


def _test_result(stored: Mapping) -> Evaluation:
    at = stored.get("at_threshold") or {}
    return Evaluation(
        n_images=int(stored.get("n_images") or 0),
        **{name: float(stored[name]) for name in RESULT_METRICS},
        precision_at_threshold=_number(at.get("positive_precision")),
        recall_at_threshold=_number(at.get("positive_recall")),
        confusion=stored.get("confusion_matrix"),
        confusion_at_threshold=at.get("confusion_matrix"),
        eval_time_s=_number(stored.get("eval_time_s")),
    )


def _number(value) -> float | None:
    return None if value is None else float(value)


def _results(test_sets: Mapping) -> dict[str, Evaluation]:
    return {name: _test_result(test_sets[name]) for name in test_set_order(test_sets)}


def _training_data(run: runs.RunSummary) -> tuple[str, bool]:
    """The folder a run trained on, in words, and whether it is the demo data. A folder of symlinks counts as the
    demo data when its first training photo (split.json) links into it, and says so."""
    data = str(run.train.get("data", "an unrecorded folder"))
    if is_demo_data(data):
        return data, True
    try:
        split = run.path / runs.SPLIT
        resolved = (Path(data) / _first_training_photo(split, split.stat().st_mtime_ns)).resolve()
    except (runs.RunError, KeyError, IndexError, TypeError, OSError):
        return data, False
    return (f"{data} (links into {resolved.parent.parent})", True) if is_demo_data(resolved) else (data, False)


@lru_cache(maxsize=512)
def _first_training_photo(split: Path, mtime_ns: int) -> str:
    """split.json lists every training photo (hundreds of kB): the Train page asks every 3 s per live run, so it is read
    once per version of the file."""
    return runs.read_json(split)["train"][0]


def from_run(run: runs.RunSummary) -> ModelRecord:
    """A run's record. A run whose results cannot be read keeps its identity and says why in `problem`."""
    data, demo = _training_data(run)
    record = ModelRecord(
        key=run.name,
        arch=run.arch,
        regime=run.regime,
        dataset=run.dataset,
        positive=str(run.train.get("positive", "captive")),
        data=data,
        demo=demo,
        state=run.state,
        params=run.config.get("n_parameters"),
        n_train=(run.config.get("n_images") or {}).get("train"),
        learning_rate=run.train.get("lr"),
        epoch=run.epoch,
        message=run.message,
        hint=run.hint,
        path=run.path,
        checkpoint=run.path / runs.CHECKPOINT,
        config=run.config,
    )
    if not (run.path / runs.RESULTS).is_file():
        return record
    try:
        stored = runs.read_json(run.path / runs.RESULTS)
        rule = stored.get("threshold") if isinstance(stored.get("threshold"), dict) else {}
        return replace(
            record,
            results=_results(stored["test_sets"]),
            threshold=_number(rule.get("threshold")),
            target_precision=_number(rule.get("target_precision")),
            epochs_run=stored.get("epochs_run"),
            best_epoch=stored.get("best_epoch"),
        )
    except (runs.RunError, KeyError, TypeError, ValueError, AttributeError) as error:
        return replace(record, problem=f"its {runs.RESULTS} cannot be read ({error})")


def default_model() -> ModelRecord | None:
    """The model shipped with wildvision, or None where its files are missing."""
    if not model_card.has_default_model():
        return None
    card = model_card.load_card()
    return ModelRecord(
        key=DEFAULT_KEY,
        arch=card["architecture"],
        regime="transfer",
        dataset="bg",
        positive="captive",
        data=card["training_data"],
        demo=True,
        state="completed",
        results=_results(card["metrics"]),
        threshold=float(card["threshold"]["value"]),
        target_precision=float(card["threshold"]["target_precision"]),
        params=card["parameters"],
        n_train=(card["training"].get("images") or {}).get("train"),
        epochs_run=card["training"]["epochs_run"],
        best_epoch=card["training"]["best_epoch"],
        path=model_card.DEFAULT_DIR,
        checkpoint=model_card.DEFAULT_DIR / model_card.HEAD,
    )


def test_folders(record: ModelRecord) -> dict[str, Path]:
    """The labelled test sets a model was evaluated on whose folders are on this machine, by name: a run's `--test`
    sets, or for the shipped model the demo data's (its card's recipe)."""
    if record.is_default:
        tests = model_card.training_config(shared.shared_folder() / "demo-data").tests
    else:
        tests = (record.config.get("train") or {}).get("tests") or {}
    return {str(name): Path(str(folder)) for name, folder in tests.items() if Path(str(folder)).is_dir()}


@dataclass(frozen=True)
class Comparison:
    """Another model's numbers on a run's test sets (comparison.json, written by wildvision.training.compare)."""

    key: str  # "default" or the replaced run's name
    role: str  # "default" or "replaced"
    label: str  # how a page names it: "the default model", "the model it replaces (NAME)"
    results: dict[str, Evaluation]
    reused: tuple[str, ...] = ()  # the test sets whose numbers come from its stored scores of the same folder


def comparisons(record: ModelRecord) -> list[Comparison]:
    """The models a run was compared with on its own test sets, in the order compared; [] for the default model, a run
    from before comparisons, or a comparison.json that cannot be read."""
    path = record.path / runs.COMPARISON if record.path is not None and not record.is_default else None
    if path is None or not path.is_file():
        return []
    try:
        return [
            Comparison(
                str(model["model"]),
                str(model["role"]),
                str(model["label"]),
                _results(model["test_sets"]),
                tuple(name for name in test_set_order(model["test_sets"]) if model["test_sets"][name].get("reused")),
            )
            for model in runs.read_json(path)["models"]
        ]
    except (runs.RunError, KeyError, TypeError, ValueError, AttributeError):
        return []


def read_model(run_dir: str | Path) -> ModelRecord:
    """The record of one run folder (raises runs.RunError when it is not one)."""
    return from_run(runs.read_run(Path(run_dir)))


def list_models(runs_dir: str | Path, include_default: bool = True) -> list[ModelRecord]:
    """The default model (when shipped and asked for), then every run under `runs_dir`, newest first."""
    records = [from_run(run) for run in runs.list_runs(runs_dir)]
    default = default_model() if include_default else None
    return ([default] if default else []) + records


def usable_models(runs_dir: str | Path) -> list[ModelRecord]:
    """The models that can predict: the default model first, then completed runs with a checkpoint, newest first."""
    return [record for record in list_models(runs_dir) if record.usable]


def stored_scores(record: ModelRecord) -> dict | None:
    """The positive-class score and label of every test image kept with the model (scores.json), to move its
    threshold and see what that costs; None when it has none or they cannot be read."""
    if not record.has_scores:
        return None
    try:
        return runs.read_json(record.path / runs.SCORES)
    except runs.RunError:
        return None


def results_frame(records: Iterable[ModelRecord]) -> pd.DataFrame:
    """Completed runs' test metrics as one tidy table shaped like `paper.reference_results()`.

    Columns: model, regime, dataset, test_set, metric, value, source (the run name), origin ("run"), data (what it
    trained on) and demo; runs in the order given. Runs whose results could not be read are left out (see `problem`).
    """
    rows = [
        (r.arch, r.regime, r.dataset, name, metric, result.metric(metric), r.key, RUN, r.data, r.demo)
        for r in records
        if not r.is_default and r.state == "completed" and r.problem is None
        for name, result in r.results.items()
        for metric in RESULT_METRICS
    ]
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def problems(records: Iterable[ModelRecord]) -> list[str]:
    """A sentence for each completed run whose numbers are left out because its files cannot be read."""
    return [f"Run {r.key} is marked completed but {r.problem}; it is left out." for r in records if r.problem and r.state == "completed"]


def runs_fingerprint(folder: str | Path) -> tuple[tuple[str, int, int, int], ...]:
    """A cheap summary of the runs folder that changes whenever a run starts, progresses or ends.

    Used as a cache key: stat calls only, no reading, so a page can call it on every rerun and reload its tables
    exactly when something on disk changed (files are replaced atomically, which gives them a new modification time).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return ()
    stamps = []
    for run_dir in sorted(folder.iterdir()):
        if not (run_dir / runs.CONFIG).is_file():
            continue
        stamp = [run_dir.name]
        for name in (runs.STATUS, runs.METRICS, runs.RESULTS):
            try:
                stamp.append((run_dir / name).stat().st_mtime_ns)
            except OSError:
                stamp.append(0)
        stamps.append(tuple(stamp))
    return tuple(stamps)
