"""A better model from people's decisions in a minute: a new head for the job's model, trained on its base training
photos plus the job's decided photos, written as an ordinary run folder.

Why only the head: the base model's backbone stays exactly as it is, so every photo's backbone features are already
known (the job stored them while screening, job_features; the base's training photos' are shipped with the default
model, or computed once into the feature store for a run). Fitting a linear head on features takes seconds on two
cores, where a training run decodes and forwards every photo again. The new model is the base network with the new
head, so it screens, predicts, explains and evaluates as any run does, and the job can be re-scored from its stored
features (rescore.use_model).

How the head is fitted: class-weighted logistic regression (scikit-learn) on the features, mapped into the model's
own linear head (logits +-(w.x + b) / 2 give softmax probability sigmoid(w.x + b)). It is the head's own loss
(cross-entropy) at its optimum, deterministic, with no epochs, learning rate or early stopping to choose; L2
regularisation keeps it from memorising a few hundred decisions. Decided photos weigh DECISION_WEIGHT_CAP times a
base photo at most, and all of them together as much as the base photos at most: they come from the photos the model
is used on, so a few hundred must move a head fit to thousands, but a handful must not outweigh everything.

What is left out: `unsure` decisions; photos in the job's audit sample (screening.audit.audit_paths), with their
reposts, so measuring the new model on the audit stays honest; a reposted photo counts once (its duplicate group);
a group whose members were decided both ways. The threshold is chosen as training chooses it
(evaluate.choose_threshold: the lowest score reaching the target precision on the base's test_in, never below 0.5),
on the base's test_in features, which neither head was fitted on.
"""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from wildvision import classes, features, model_card, novelty, runs, shared
from wildvision.evaluate import PAPER_THRESHOLD, choose_threshold, compute_metrics
from wildvision.inference import pooled
from wildvision.models import count_parameters, head, split_at_head
from wildvision.predict import LoadedModel, load_model
from wildvision.screening import decisions, job_features
from wildvision.screening.audit import audit_paths
from wildvision.screening.config import SCORES, read_config
from wildvision.training.config import TrainConfig
from wildvision.training.run_data import samples_in_split
from wildvision.training.train import CHECKPOINT_FORMAT, code_version

DEFAULT_FEATURES = "train_features.npz"  # in wildvision/default_model/: experiments/build_default_features.py
DECISION_WEIGHT_CAP = 10.0
REGULARISATION = 1.0  # scikit-learn's C on standardised features: its default, which held on the demo benchmark
TARGET_PRECISION = 0.95  # the default model's (model_card.json's threshold.target_precision)


@dataclass(frozen=True)
class BaseData:
    """The base model's training and validation (test_in) photos as features, 1 = positive class."""

    train: np.ndarray
    train_labels: np.ndarray
    validation: np.ndarray
    validation_labels: np.ndarray
    train_config: TrainConfig  # the base's recipe, which the new run's config.json records as its own
    backbone: str  # job_features.backbone_digest of the weights that made the features


@dataclass(frozen=True)
class Decided:
    """The job's decided photos used for training (one row per distinct photo) and what was left out, in photos."""

    features: np.ndarray
    labels: np.ndarray
    held_out_features: np.ndarray
    held_out_labels: np.ndarray
    per_class: dict[str, int]
    unsure: int
    held_out: int  # decided photos in the audit sample
    conflicting: int  # reposts decided both ways


def _default_base(loaded: LoadedModel) -> BaseData:
    path = model_card.DEFAULT_DIR / DEFAULT_FEATURES
    if not path.is_file():
        raise runs.RunError(f"the default model's training features are missing ({path}): rebuild them with experiments/build_default_features.py")
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    recipe = model_card.training_config(shared.shared_folder() / "demo-data")
    recipe = replace(recipe, target_precision=float(model_card.load_card()["threshold"]["target_precision"]))
    return BaseData(arrays["train"], arrays["train_labels"], arrays["test_in"], arrays["test_in_labels"], recipe, str(arrays["backbone"]))


def _run_base(run_dir: Path, loaded: LoadedModel) -> BaseData:
    """A run's train and test_in photos' features: from the feature store, computed (once) where it has none."""
    config = TrainConfig(**runs.read_json(run_dir / runs.CONFIG)["train"])
    try:
        train, test_in = samples_in_split(config, runs.read_json(run_dir / runs.SPLIT), f"run {run_dir.name}'s split")
    except (ValueError, OSError) as error:
        raise runs.RunError(f"the training photos of {run_dir.name} cannot be read, so its head cannot be retrained: {error}") from None
    backbone, _ = split_at_head(loaded.model, loaded.arch)
    digest = features.weights_digest(backbone)
    arrays = []
    for samples in (train, test_in):
        stored = features.eval_features(samples, loaded.arch, backbone, digest, loaded.normalisation, config.cache_folder, loaded.device)
        arrays += [pooled(stored.features[:, 0]).numpy(), stored.labels.numpy()]
    return BaseData(*arrays, config, job_features.backbone_digest(loaded.model, loaded.arch))


def base_model(base: str, runs_dir: Path) -> tuple[LoadedModel, BaseData, Path | None]:
    """The base model, its training data as features, and its run folder (None for the default model).

    Refused in words: a run that is not completed, a run that was itself retrained (its split does not hold the
    decisions it learnt from), a model whose head is not one linear layer."""
    run_dir = None
    if base != model_card.DEFAULT_NAME:
        run_dir = runs.resolve_run(base, runs_dir)
        state = runs.read_run(run_dir).state
        if state != "completed":
            raise runs.RunError(f"run {run_dir.name} is {state}, not completed: only a completed run's model can be retrained")
        lineage = runs.read_json(run_dir / runs.CONFIG).get("retrain")
        if lineage:  # its split names its base's photos, not the decisions it learnt from
            raise runs.RunError(f"run {run_dir.name} was itself retrained on decisions: retrain its base model ({lineage['base_model']}) with this job instead")
    loaded = load_model(str(run_dir or base), runs_dir)
    if not isinstance(head(loaded.model, loaded.arch), nn.Linear):
        raise runs.RunError(f"a {loaded.arch} model's head is not one linear layer, so it cannot be retrained on stored features")
    return loaded, (_default_base(loaded) if run_dir is None else _run_base(run_dir, loaded)), run_dir


def _score_rows(screen_dir: Path) -> list[dict]:
    with open(Path(screen_dir) / SCORES, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.DictReader(handle))


def decided_photos(screen_dir: Path, held_out: set[str]) -> Decided:
    """The job's positive and negative decisions as feature rows, one per distinct photo (duplicate group); photos of
    a group with a member in `held_out` go to the held-out rows instead."""
    screen_dir = Path(screen_dir)
    names = read_config(screen_dir).class_names or decisions.DEFAULT_CLASSES
    label_of = {classes.positive_class(names): 1, classes.negative_class(names): 0}
    _, stored = job_features.read_features(screen_dir)
    rows = _score_rows(screen_dir)
    index = {row["path"]: i for i, row in enumerate(rows)}
    group_of = lambda path: rows[index[path]]["duplicate_group"] or path
    held_groups = {group_of(path) for path in held_out if path in index}
    votes: dict[str, dict[int, int]] = {}  # group -> label -> a decided row of it
    unsure = 0
    for path, decision in decisions.current(screen_dir).items():
        if path not in index:
            continue
        if decision.label not in label_of:
            unsure += 1
            continue
        votes.setdefault(group_of(path), {}).setdefault(label_of[decision.label], index[path])
    train, train_labels, kept, kept_labels = [], [], [], []
    conflicting = 0
    for group, labels in votes.items():
        if len(labels) > 1:
            conflicting += 1
            continue
        ((label, row),) = labels.items()
        if np.isnan(stored[row, 0]):
            continue
        (kept if group in held_groups else train).append(row)
        (kept_labels if group in held_groups else train_labels).append(label)
    take = lambda chosen: np.asarray(stored[sorted(chosen)] if chosen else np.zeros((0, stored.shape[1])), dtype=np.float16)
    order = lambda chosen, labels: np.array([label for _, label in sorted(zip(chosen, labels))], dtype=np.int64)
    per_class = {name: int(sum(1 for label in train_labels if label == value)) for name, value in label_of.items()}
    return Decided(take(train), order(train, train_labels), take(kept), order(kept, kept_labels), per_class, unsure, len(kept), conflicting)


def fit_head(layer: nn.Linear, train: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> None:
    """Fit `layer` (2 outputs: negative, positive) in place by class-weighted logistic regression on `train`."""
    x = train.astype(np.float32)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(C=REGULARISATION, class_weight="balanced", max_iter=2000)
    model.fit((x - mean) / scale, labels, sample_weight=weights)
    w = model.coef_[0] / scale
    b = float(model.intercept_[0] - (model.coef_[0] * mean / scale).sum())
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.stack([-w / 2, w / 2])).to(layer.weight))
        layer.bias.copy_(torch.tensor([-b / 2, b / 2]).to(layer.bias))


def head_probabilities(layer: nn.Linear, rows: np.ndarray) -> np.ndarray:
    """The positive-class probability the head gives each row of features (float32 arithmetic, as screening)."""
    with torch.inference_mode():
        logits = layer(torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(layer.weight.device))
        return torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()


def _evaluation(layer: nn.Linear, rows: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[dict, dict]:
    started = time.perf_counter()
    probabilities = head_probabilities(layer, rows)
    metrics = compute_metrics(labels, probabilities, PAPER_THRESHOLD)
    at = compute_metrics(labels, probabilities, threshold)
    metrics |= {
        "eval_time_s": time.perf_counter() - started,
        "skipped": [],
        "at_threshold": {k: at[k] for k in ("threshold", "positive_precision", "positive_recall", "accuracy", "f_score", "confusion_matrix")},
    }
    return metrics, {"labels": labels.tolist(), "probabilities": [round(float(p), 6) for p in probabilities]}


@dataclass(frozen=True)
class Retrained:
    run_dir: Path
    lineage: dict
    threshold: float


def retrain(
    screen_dir: str | Path, base: str = "default", name: str | None = None, runs_dir: str | Path | None = None, held_out: set[str] | None = None
) -> Retrained:
    """Train a new head for `base` (default, or a run) on its training photos plus the job's decided photos and write
    it as a completed run folder under `runs_dir`. `held_out`: photos kept out of training (default: the job's audit
    sample, screening.audit.audit_paths). RunError in words for a job without stored features, features of another
    backbone than the base's, a base run that is not completed, or no usable decision."""
    started = time.perf_counter()
    screen_dir = Path(screen_dir)
    runs_dir = Path(runs_dir) if runs_dir is not None else runs.default_runs_dir()
    description, _ = job_features.read_features(screen_dir)
    loaded, data, base_dir = base_model(base, runs_dir)
    if description.backbone != data.backbone or description.arch != loaded.arch:
        raise runs.RunError(
            f"screening job {screen_dir.name}'s photo features come from a {description.arch} backbone other than {base}'s: "
            "retrain from the model that screened the job"
        )
    if held_out is None:
        held_out = audit_paths(screen_dir)
    decided = decided_photos(screen_dir, held_out)
    if not len(decided.labels):
        raise runs.RunError(f"screening job {screen_dir.name} has no photo decided as one of its classes outside the audit sample: decide some first")
    weight = min(DECISION_WEIGHT_CAP, max(1.0, len(data.train_labels) / len(decided.labels)))
    rows = np.concatenate([data.train, decided.features])
    labels = np.concatenate([data.train_labels.astype(np.int64), decided.labels])
    sample_weights = np.concatenate([np.ones(len(data.train_labels)), np.full(len(decided.labels), weight)])
    layer = head(loaded.model, loaded.arch)
    fit_head(layer, rows, labels, sample_weights)
    validation_probabilities = head_probabilities(layer, data.validation)
    rule = choose_threshold(
        {"test_in": {"labels": data.validation_labels.tolist(), "probabilities": validation_probabilities.tolist()}}, data.train_config.target_precision
    )
    sets = {"test_in": (data.validation, data.validation_labels)}
    if len(decided.held_out_labels):
        sets["held_out_decisions"] = (decided.held_out_features, decided.held_out_labels)
    evaluated = {name: _evaluation(layer, x, y, rule["threshold"]) for name, (x, y) in sets.items()}
    lineage = {
        "base_model": base if base_dir is None else str(base_dir.resolve()),
        "screening_job": str(screen_dir.resolve()),
        "decisions_used": decided.per_class,
        "decision_weight": round(weight, 3),
        "unsure_left_out": decided.unsure,
        "held_out_photos": decided.held_out,
        "conflicting_reposts_left_out": decided.conflicting,
        "base_training_photos": len(data.train_labels),
        "code_version": code_version(),
        "seconds": None,
    }
    run_dir = runs.create_run_dir(runs_dir, name or f"retrained-{screen_dir.name}")
    try:
        _write_run(run_dir, loaded, data, decided, rule, evaluated, lineage, base_dir)
    except Exception as error:
        runs.write_status(run_dir, "failed", message=f"the retrained model could not be written: {error}")
        raise
    lineage["seconds"] = round(time.perf_counter() - started, 1)
    config = runs.read_json(run_dir / runs.CONFIG)
    runs.write_json_atomic(run_dir / runs.CONFIG, config | {"retrain": lineage})
    runs.write_status(
        run_dir, "completed", epoch=1, max_epochs=1, message=f"head retrained on {sum(decided.per_class.values())} decided photos of {screen_dir.name}"
    )
    return Retrained(run_dir, lineage, float(rule["threshold"]))


def _write_run(run_dir: Path, loaded: LoadedModel, data: BaseData, decided: Decided, rule: dict, evaluated: dict, lineage: dict, base_dir: Path | None) -> None:
    """The run folder (runs.py's contract): config.json, split.json, checkpoint.pt, results.json, scores.json,
    metrics.jsonl, the base's novelty.npz (same backbone, so the same summary of the training photos); status last."""
    recipe = asdict(data.train_config) | {"epochs": 1}
    n_train = len(data.train_labels) + len(decided.labels)
    config = {
        "train": recipe,
        "dataset": runs.dataset_name(bool(recipe.get("with_background"))),
        "created_at": runs.now(),
        "n_images": {"train": n_train, "test_in": len(data.validation_labels)},
        "n_parameters": count_parameters(loaded.arch),
        "code_version": lineage["code_version"],
        "warnings": [],
        "excluded": [],
        "retrain": lineage,
    }
    runs.write_json_atomic(run_dir / runs.CONFIG, config)
    runs.write_status(run_dir, "running", epoch=0, max_epochs=1, message="writing the retrained model")
    base_split = runs.read_json((base_dir or model_card.DEFAULT_DIR) / runs.SPLIT)
    runs.write_json_atomic(run_dir / runs.SPLIT, {"seed": base_split.get("seed"), "train": base_split.get("train", []), "test_in": base_split["test_in"]})
    mean, std = loaded.normalisation
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "arch": loaded.arch,
        "class_names": list(loaded.class_names),
        "positive_class": loaded.positive_class,
        "normalisation": {"mean": list(mean), "std": list(std), "input_size": 224},
        "threshold": float(rule["threshold"]),
        "threshold_rule": rule,
        "epoch": 1,
        "val_loss": None,
        "config": recipe,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()},
    }
    runs.save_torch_atomic(run_dir / runs.CHECKPOINT, checkpoint)
    summary = (base_dir or model_card.DEFAULT_DIR) / novelty.FILE
    if summary.is_file():
        shutil.copyfile(summary, run_dir / novelty.FILE)
    validation = evaluated["test_in"][0]
    runs.append_metrics(
        run_dir,
        {"epoch": 1, "phase": "head", "train_images": n_train, "on_stored_features": True, "best": True}
        | {f"val_{k}": validation[k] for k in ("accuracy", "f_score", "precision", "recall", "positive_precision")},
    )
    runs.write_json_atomic(run_dir / runs.SCORES, {name: scores for name, (_, scores) in evaluated.items()})
    runs.write_json_atomic(
        run_dir / runs.RESULTS, {"best_epoch": 1, "epochs_run": 1, "threshold": rule, "test_sets": {name: m for name, (m, _) in evaluated.items()}}
    )
