"""The paper's three training regimes (Table S5) as one loop that writes a run folder as it goes.

transfer: only the new head trains (batch 75, lr 0.001, early-stopping patience 15).
scratch:  all layers from random init (batch 15, lr 0.0005, patience 35).
combi:    10 epochs as transfer, then all layers as scratch, starting from the trained head.

As in the paper, test_in (the 20% split) is also the validation set: the epoch with the lowest
test_in cross-entropy is kept, so test_in scores are optimistic; the out-of-distribution test sets
are never seen during training.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from wildvision import feature_store, features, jobs, novelty, runs
from wildvision.data import Sample, file_list_hash, make_loader, train_transform
from wildvision.datacheck import test_duplicates
from wildvision.evaluate import choose_threshold, compute_metrics, evaluate_samples, infer, resolve_device
from wildvision.models import build_model, count_parameters, head, normalisation, split_at_head
from wildvision.training import compare, progress
from wildvision.training.config import TrainConfig
from wildvision.training.run_data import check_folders, leak_warnings, prepare_data, prepare_tests, samples_in_split, split_record, without

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "wildvision-checkpoint-1"


def code_version() -> str:
    try:
        return (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"], check=False, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def set_trainable(model: nn.Module, arch: str, train_all_layers: bool) -> list[nn.Parameter]:
    """Freeze everything but the head unless `train_all_layers`; return the parameters to optimise."""
    for parameter in model.parameters():
        parameter.requires_grad = train_all_layers
    for parameter in head(model, arch).parameters():
        parameter.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def start_run(config: TrainConfig, runs_dir: str | Path = "runs", name: str | None = None, prepare: bool = True) -> Path:
    """Create the run folder with its config and a queued status, and return it; a training or test folder that
    cannot be used raises first, before anything is made. With `prepare` the photos are also split and checked for
    copies and label conflicts now (prepare_run); the dashboard passes False, since that takes seconds per thousand
    photos and its page must answer at once: the run's process then does it before it trains."""
    check_folders(config)
    run_dir = create_run(config, runs_dir, name)
    if prepare:
        prepare_run(run_dir)
    return run_dir


def create_run(config: TrainConfig, runs_dir: str | Path = "runs", name: str | None = None) -> Path:
    """The run folder with its config and a queued status, its folders taken as checked (run_data.check_folders)."""
    run_dir = runs.create_run_dir(runs_dir, name or config.name)
    runs.write_json_atomic(run_dir / runs.CONFIG, {"train": asdict(config), "dataset": config.dataset, "created_at": runs.now()})
    runs.write_status(run_dir, "queued", epoch=0, max_epochs=config.epochs)
    return run_dir


def prepare_run(run_dir: Path) -> None:
    """Split the photos with each used once, look for test photos that copy training photos, and complete config.json
    (fingerprints, counts, warnings, what was left out) and split.json."""
    config = load_config(run_dir)
    train, test_in, tests, left_out = prepare_data(config)
    leaks = test_duplicates(train, {"test_in": test_in} | tests)
    warnings = leak_warnings(leaks, {"test_in": test_in} | tests, config.exclude_test_duplicates)
    conflicts = [entry for entry in left_out if entry["reason"].startswith("label conflict")]
    excluded = [{"files": [str(Path(config.data) / f) for f in entry["files"]], "reason": entry["reason"]} for entry in conflicts]
    if conflicts:
        warnings.append(
            f"{len(conflicts)} photos are under both the positive and a negative class (e.g. {', '.join(conflicts[0]['files'])}): left out of train and test_in"
        )
    if config.exclude_test_duplicates:
        excluded += [
            {"files": [str(test)], "reason": f"{name}: one photo with training image {image}"} for name, pairs in leaks.items() for test, image in pairs
        ]
        tests = without(tests, leaks)
    for warning in warnings:
        log.warning(warning)
    runs.write_json_atomic(
        run_dir / runs.CONFIG,
        runs.read_json(run_dir / runs.CONFIG)
        | {
            "data_hash": file_list_hash(train + test_in, config.data),
            "test_hashes": {n: file_list_hash(s, config.tests[n]) for n, s in tests.items()},
            "n_images": {"train": len(train), "test_in": len(test_in)} | {n: len(s) for n, s in tests.items()},
            "n_parameters": count_parameters(config.arch),
            "code_version": code_version(),
            "warnings": warnings,
            "excluded": excluded,
        },
    )
    runs.write_json_atomic(run_dir / runs.SPLIT, split_record(config, train, test_in, left_out))


def load_config(run_dir: Path) -> TrainConfig:
    return TrainConfig(**runs.read_json(run_dir / runs.CONFIG)["train"])


def _optimisation_step(module: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, optimizer, scaler, device: torch.device) -> float:
    """One SGD step on the cross-entropy of `module(inputs)`, in mixed precision on CUDA; returns the loss."""
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        loss = nn.functional.cross_entropy(module(inputs), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def train_head_epoch(
    tail: nn.Module,
    stored: features.FeatureSet,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    batch_size: int,
    seed: int,
    device: torch.device,
) -> tuple[float, int]:
    """One epoch of head-only training on stored backbone outputs, each image seen through one randomly
    drawn view; returns (mean loss, images)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(stored.labels), generator=generator)
    view = torch.randint(stored.views, (len(stored.labels),), generator=generator)
    loss_sum = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        inputs = stored.features[batch, view[batch]].to(device, non_blocking=True).float()
        labels = stored.labels[batch].to(device, non_blocking=True)
        loss_sum += _optimisation_step(tail, inputs, labels, optimizer, scaler, device) * len(batch)
    return loss_sum / max(len(order), 1), len(order)


def _train_one_epoch(model, loader, optimizer, scaler, device, tracker: progress.Tracker, epoch) -> tuple[float, int]:
    loss_sum, seen = 0.0, 0
    for batch_index, batch in enumerate(loader):
        if batch is None:
            continue
        images, labels, _ = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)
        loss = _optimisation_step(model, images, labels, optimizer, scaler, device)
        loss_sum += loss * len(labels)
        seen += len(labels)
        tracker.epoch(epoch, batch_index + 1, len(loader))
    return loss_sum / max(seen, 1), seen


def _checkpoint(config: TrainConfig, model: nn.Module, epoch: int, val_loss: float, threshold: float) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": config.arch,
        "class_names": [f"not_{config.positive}", config.positive],
        "positive_class": config.positive,
        "normalisation": {"mean": list(normalisation(config.arch)[0]), "std": list(normalisation(config.arch)[1]), "input_size": 224},
        "threshold": threshold,
        "epoch": epoch,
        "val_loss": val_loss,
        "config": asdict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def execute_run(run_dir: Path) -> dict:
    """Train (or continue training) the run in `run_dir`, evaluate its best epoch and write results.json.

    Safe to call again on a run that was killed: it continues after the last completed epoch.
    """
    run_dir = Path(run_dir)
    handler = logging.FileHandler(run_dir / runs.LOG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("wildvision").addHandler(handler)
    try:
        with jobs.sigterm_cancels():
            runs.write_status(run_dir, "running", message=None)
            tracker = progress.Tracker(run_dir, load_config(run_dir), checking=not (run_dir / runs.SPLIT).is_file())
            if tracker.checking:  # started from the dashboard, whose page does not wait for the photos to be checked
                tracker.plan(compare.needed(tracker.config, prepare_tests(tracker.config)))
                tracker.start(progress.CHECKING, progress.CHECKING_WORDS)
                prepare_run(run_dir)
            results = _train_and_evaluate(run_dir, tracker)
            runs.write_status(run_dir, "completed", message=None, progress=None)
            return results
    except jobs.Cancelled:
        log.warning("cancelled")
        runs.write_status(run_dir, "cancelled", message="cancelled by the user", hint="resume")
        raise
    except Exception as error:
        # The traceback goes to train.log only; the user's terminal gets the one-line message from the CLI.
        handler.emit(log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed", None, sys.exc_info()))
        # The message says what happened; the advice is a reason code that the CLI and the pages word themselves.
        runs.write_status(run_dir, "failed", message=f"{type(error).__name__}: {error}", hint=getattr(error, "hint", None))
        raise
    finally:
        logging.getLogger("wildvision").removeHandler(handler)
        handler.close()


def _train_and_evaluate(run_dir: Path, tracker: progress.Tracker) -> dict:
    config = tracker.config
    train, test_in = samples_in_split(config, runs.read_json(run_dir / runs.SPLIT), "this run's split")
    tests = prepare_tests(config, train)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    log.info("run %s: %s on %s, %d train / %d test_in images", run_dir.name, config.name, device, len(train), len(test_in))
    compared = (run_dir / runs.COMPARISON).is_file()  # before a resume
    tracker.plan(not compared and compare.needed(config, tests), len(train), len(test_in), sum(map(len, tests.values())))
    if not compared:
        tracker.start(progress.COMPARISON, "scoring the test sets with the models this run is compared with", 0)
        compare.compare(run_dir, config, tests, tracker.counted)

    torch.manual_seed(config.seed)
    # channels_last speeds up convolutions on both CPU (oneDNN) and GPU (tensor cores).
    model = build_model(config.arch, config.weights).to(device, memory_format=torch.channels_last)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    state = {"epoch": 0, "best_val_loss": float("inf"), "best_epoch": 0, "epochs_since_best": 0, "done": False}

    last_path = run_dir / runs.LAST
    optimizer, phase_index = None, None
    if last_path.exists():
        last = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(last["model"])
        state.update(last["state"])
        phase_index, phase = config.phase_at(state["epoch"])
        optimizer = torch.optim.SGD(set_trainable(model, config.arch, phase.train_all_layers), lr=phase.lr, momentum=config.momentum)
        optimizer.load_state_dict(last["optimizer"])
        scaler.load_state_dict(last["scaler"])
        log.info("resuming after epoch %d", state["epoch"])
    runs.truncate_metrics(run_dir, state["epoch"])
    stored = None  # (tail, train features, test_in features) while a head-only phase trains on stored features

    while not state["done"] and state["epoch"] < config.epochs:
        epoch = state["epoch"] + 1
        index, phase = config.phase_at(epoch)
        if index != phase_index:
            phase_index = index
            optimizer = torch.optim.SGD(set_trainable(model, config.arch, phase.train_all_layers), lr=phase.lr, momentum=config.momentum)
            state["epochs_since_best"] = 0
            log.info("epoch %d: %s, batch %d, lr %g", epoch, "all layers" if phase.train_all_layers else "head only", phase.batch_size, phase.lr)
        started = time.perf_counter()
        on_stored_features = config.on_stored_features(phase)
        cache_time = None
        if on_stored_features and stored is None:
            stored = _stored_features(model, config, train, test_in, device, tracker)
            cache_time = time.perf_counter() - started
        elif not on_stored_features:
            stored = None
        tracker.epoch(epoch)
        # Head-only: frozen layers stay in eval mode, so BatchNorm statistics and dropout do not change them.
        model.train(phase.train_all_layers)
        train_started = time.perf_counter()
        if on_stored_features:
            tail, train_features, val_features = stored
            train_loss, n_trained = train_head_epoch(tail, train_features, optimizer, scaler, phase.batch_size, config.seed * 1000 + epoch, device)
            train_time = time.perf_counter() - train_started
            val = features.head_inference(tail, val_features, device)
        else:
            torch.manual_seed(config.seed * 1000 + epoch)  # augmentation in this process; workers get seeds from the loader
            loader = make_loader(
                train,
                True,
                phase.batch_size,
                config.num_workers,
                seed=config.seed * 1000 + epoch,
                pin_memory=device.type == "cuda",
                normalisation=normalisation(config.arch),
                image_cache=config.cache_folder,
            )
            train_loss, n_trained = _train_one_epoch(model, loader, optimizer, scaler, device, tracker, epoch)
            train_time = time.perf_counter() - train_started
            val_loader = make_loader(
                test_in,
                False,
                64,
                config.num_workers,
                pin_memory=device.type == "cuda",
                normalisation=normalisation(config.arch),
                image_cache=config.cache_folder,
            )
            val = infer(model, val_loader, device)
        val_loss = val.loss()
        val_metrics = compute_metrics(val.labels.tolist(), val.probabilities.tolist())
        clamped = float((val.logits == 0).any(dim=1).float().mean()) if len(val.logits) else 0.0
        if clamped > 0.5:
            log.warning(
                "epoch %d: for %.0f%% of test_in images a logit is exactly 0: the head's final ReLU (SqueezeNet) has "
                "clamped it, so those outputs no longer learn; the learning rate is too high for these weights' "
                "activation scale (try a learning rate of 0.0001)",
                epoch,
                100 * clamped,
            )
        improved = val_loss < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch, epochs_since_best=0)
            runs.save_torch_atomic(run_dir / runs.CHECKPOINT, _checkpoint(config, model, epoch, val_loss, 0.5))
        else:
            state["epochs_since_best"] += 1
        if phase.patience is not None and state["epochs_since_best"] >= phase.patience:
            state["done"] = True
            log.info("early stop: no lower validation loss for %d epochs", phase.patience)
        state["epoch"] = epoch
        row = {
            "epoch": epoch,
            "phase": "all_layers" if phase.train_all_layers else "head",
            "train_loss": train_loss,
            "val_loss": val_loss,
            **{f"val_{k}": val_metrics[k] for k in ("accuracy", "f_score", "precision", "recall", "positive_precision")},
            "train_images": n_trained,
            "epoch_time_s": time.perf_counter() - started,
            "train_time_s": train_time,
            "on_stored_features": on_stored_features,
            **({"feature_cache_s": cache_time} if cache_time is not None else {}),
            "best": improved,
        }
        runs.append_metrics(run_dir, row)
        runs.save_torch_atomic(
            last_path,
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "state": state},
        )
        tracker.epoch_done(row, best_epoch=state["best_epoch"])
        log.info("epoch %d: train loss %.4f, val loss %.4f, val F %.3f, %.1f s", epoch, train_loss, val_loss, val_metrics["f_score"], row["epoch_time_s"])

    best = torch.load(run_dir / runs.CHECKPOINT, map_location=device, weights_only=True)
    model.load_state_dict(best["state_dict"])
    tracker.start(progress.EVALUATION, "evaluating the best epoch on every test set", 0, tracker.photos[progress.EVALUATION])
    store = _stored_backbone(model, config, device)
    results, scores, rule = evaluate_run_model(model, config, {"test_in": test_in} | tests, device, report=tracker.counted, store=store)
    runs.save_torch_atomic(run_dir / runs.CHECKPOINT, best | {"threshold": rule["threshold"], "threshold_rule": rule})
    _save_novelty_summary(run_dir, config, train, test_in, tracker, store)
    feature_store.enforce_bound(config.cache_folder)  # decoded images count too, and a plain loop stores no features
    runs.write_json_atomic(run_dir / runs.SCORES, scores)
    runs.write_json_atomic(run_dir / runs.RESULTS, {"best_epoch": best["epoch"], "epochs_run": state["epoch"], "threshold": rule, "test_sets": results})
    last_path.unlink(missing_ok=True)  # the best model is in checkpoint.pt; the resume state is no longer needed
    return results


def _save_novelty_summary(
    run_dir: Path, config: TrainConfig, train: list[Sample], test_in: list[Sample], tracker: progress.Tracker, store: features.StoredBackbone | None
) -> None:
    """What the "unlike the training photos" score of this run's predictions needs (wildvision.novelty): the training
    photos' pooled backbone features, and a warning level from test_in's: from the store when it holds the best model's
    backbone (a transfer run), else a forward pass over both. A failure is logged and the run completes without it."""
    from wildvision.predict import load_model

    photos = len(train) + len(test_in)
    how = "from stored features" if store is not None else "a forward pass"
    tracker.start(progress.NOVELTY, f"{progress.NOVELTY_WORDS}: {how} over {photos:,} photos", 0, photos)
    try:
        if store is not None:
            counted = lambda done, to_compute: tracker.counted(progress.NOVELTY_WORDS, len(train) - to_compute + done, photos)
            train_features = features.pooled_eval_features(store, train, counted)
            test_in_features = features.pooled_eval_features(store, test_in)
        else:
            loaded = load_model(run_dir / runs.CHECKPOINT, device=config.device)
            train_features = novelty.backbone_features(loaded, [sample.path for sample in train])
            tracker.report(f"{progress.NOVELTY_WORDS}: {len(train):,} of {photos:,} photos", len(train), photos, force=True)
            test_in_features = novelty.backbone_features(loaded, [sample.path for sample in test_in])
        summary = novelty.fit_summary(train_features, test_in_features, arch=config.arch, k=min(novelty.DEFAULT_K, len(train)))
        novelty.save(summary, run_dir / novelty.FILE)
    except (ValueError, RuntimeError, OSError) as error:
        log.warning("no summary of the training photos, so predictions will not say how unlike them a photo is: %s", error)


def _stored_backbone(model: nn.Module, config: TrainConfig, device: torch.device) -> features.StoredBackbone | None:
    """features.stored_backbone of the model; None for a run that stores no features (feature_views 0: the plain loop)."""
    if config.feature_views == 0:
        return None
    return features.stored_backbone(model, config.arch, normalisation(config.arch), config.cache_folder, device, config.num_workers)


def _stored_features(model: nn.Module, config: TrainConfig, train: list[Sample], test_in: list[Sample], device: torch.device, tracker: progress.Tracker):
    """(tail, training views' features, test_in features) for head-only epochs, computing what is not cached yet."""
    backbone, tail = split_at_head(model, config.arch)
    norm = normalisation(config.arch)
    photos, work = len(train) + len(test_in), config.feature_views * len(train) + len(test_in)  # work: forward passes
    # Said before the first batch too: on a CPU that batch alone can take a while.
    tracker.start(progress.FEATURES, f"computing stored features: 0 of {photos:,} photos", None, work)

    def part(before: int, samples: list[Sample], views: int):
        """A progress callback for one of the two calls below, counting photos already in the cache as done."""

        def report(done: int, to_compute: int) -> None:
            finished = len(samples) - to_compute + done
            tracker.counted("computing stored features", before + finished, photos, before * config.feature_views + finished * views, work)

        return report

    common = {
        "arch": config.arch,
        "backbone": backbone,
        "weights": features.weights_digest(backbone),
        "cache_dir": config.cache_folder,
        "device": device,
        "num_workers": config.num_workers,
    }
    train_features = features.backbone_features(
        train,
        transform_for_label=lambda label: train_transform(label == 1, norm),
        views=config.feature_views,
        seed=config.seed,
        progress=part(0, train, config.feature_views),
        **common,
    )
    val_features = features.eval_features(test_in, normalisation=norm, progress=part(len(train), test_in, 1), **common)
    tracker.measure_phase(work)
    log.info("head-only epochs train on %d stored views of %d images (cache: %s)", config.feature_views, len(train_features.labels), config.cache_folder)
    return tail, train_features, val_features


def add_test_sets(run_dir: Path, tests: Mapping[str, str], device: str = "auto") -> dict:
    """Evaluate a completed run's best model on more test sets, at its own threshold, and add their metrics and
    scores to its results.json and scores.json (sets of the same name are replaced). Returns the new sets' metrics."""
    from wildvision.predict import load_model

    config = replace(load_config(run_dir), tests=dict(tests))
    loaded = load_model(run_dir / runs.CHECKPOINT, device=device)
    train = samples_in_split(config, runs.read_json(run_dir / runs.SPLIT), "this run's split")[0] if config.exclude_test_duplicates else None
    store = _stored_backbone(loaded.model, config, loaded.device)
    results, scores, _ = evaluate_run_model(loaded.model, config, prepare_tests(config, train), loaded.device, loaded.threshold, store=store)
    stored = runs.read_json(run_dir / runs.RESULTS)
    stored["test_sets"].update(results)
    kept_scores = runs.read_json(run_dir / runs.SCORES) if (run_dir / runs.SCORES).is_file() else {}
    runs.write_json_atomic(run_dir / runs.SCORES, kept_scores | scores)
    runs.write_json_atomic(run_dir / runs.RESULTS, stored)
    return results


def evaluate_run_model(
    model: nn.Module,
    config: TrainConfig,
    test_sets: dict[str, list[Sample]],
    device: torch.device,
    threshold: float | None = None,
    report: Callable[[str, int, int], None] | None = None,
    store: features.StoredBackbone | None = None,
) -> tuple[dict, dict, dict]:
    """The paper's metrics for each named test set, plus precision and recall at the model's decision threshold.

    Without a `threshold`, it is chosen on test_in for the configured target precision. Returns
    (metrics per test set, scores per test set, the threshold and how it was chosen). `report(words, photos done,
    photos to do)` follows the evaluation over all the sets. With a `store` (the model's backbone is in the feature
    store: `_stored_backbone`) only the head runs on stored features, and the backbone only on photos not stored yet.
    """
    results, scores, done, total = {}, {}, 0, sum(map(len, test_sets.values()))
    for name, samples in test_sets.items():
        counted = None if report is None else (lambda photos, name=name, before=done: report(f"evaluating the test sets, now {name}", before + photos, total))
        if store is not None:
            metrics, scores[name] = features.evaluate_stored(store, samples, progress=counted)
        else:
            metrics, scores[name] = evaluate_samples(
                model, samples, device, num_workers=config.num_workers, normalisation=normalisation(config.arch), progress=counted
            )
        done += len(samples)
        for path in metrics["skipped"]:
            log.warning("%s: skipped unreadable image %s", name, path)
        how = "head on stored features" if store is not None else "full forward pass"
        log.info(
            "%s: accuracy %.4f, F %.4f (%d images, %.1f s, %s)", name, metrics["accuracy"], metrics["f_score"], metrics["n_images"], metrics["eval_time_s"], how
        )
        results[name] = metrics
    if threshold is None:
        rule = choose_threshold(scores, config.target_precision, config.calibrate_on)
    else:
        rule = {"threshold": threshold}
    for name, metrics in results.items():
        at = compute_metrics(scores[name]["labels"], scores[name]["probabilities"], rule["threshold"])
        metrics["at_threshold"] = {k: at[k] for k in ("threshold", "positive_precision", "positive_recall", "accuracy", "f_score", "confusion_matrix")}
    if "below_floor" in rule:
        log.info(
            "decision threshold %.4f: test_in reached precision %s at %.4f, below the floor", rule["threshold"], config.target_precision, rule["below_floor"]
        )
    else:
        log.info("decision threshold %.4f (target precision %s on %s)", rule["threshold"], config.target_precision, rule.get("chosen_on", "test_in"))
    return results, scores, rule
