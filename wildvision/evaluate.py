"""Metrics as the paper reports them, and inference over a set of images.

The paper's accuracy, f-score, precision and recall (Tables S1-S3) are weighted over both classes;
Table 1 adds the precision of the positive class alone. All are computed at a decision threshold on
the positive-class probability (0.5 unless a checkpoint says otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    precision_score,
)
from torch import nn

from wildvision import inference
from wildvision.data import Sample, make_loader
from wildvision.models import IMAGENET, Normalisation

PAPER_THRESHOLD = 0.5  # the paper's metrics are those of the arg-max class


class DeviceError(ValueError):
    """A CUDA device was asked for on a machine without one; the advice (hint "no_cuda") is worded where it is shown."""

    hint = "no_cuda"


def threshold_for_precision(labels: Sequence[int], probabilities: Sequence[float], target: float) -> dict:
    """The lowest threshold whose positive-class precision reaches `target`, so it keeps the most recall.

    The paper stresses few false positives: a flagged image should be worth a person's time. When no
    threshold reaches the target, the one with the highest precision is returned and `met` is False.
    """
    precision, recall, thresholds = precision_recall_curve(np.asarray(labels), np.asarray(probabilities), pos_label=1)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    reaching = np.flatnonzero(precision >= target)
    index = int(reaching[0]) if len(reaching) else int(np.argmax(precision))
    return {
        "threshold": float(thresholds[index]),
        "target_precision": target,
        "met": bool(len(reaching)),
        "precision": float(precision[index]),
        "recall": float(recall[index]),
    }


#: The lowest threshold chosen on test_in: the paper's 0.5, at which the model calls a photo more likely captive than not.
THRESHOLD_FLOOR = 0.5


def choose_threshold(scores: Mapping[str, Mapping], target: float, calibrate_on: str | None = None) -> dict:
    """The decision threshold a model flags with, and how it was chosen (results.json's ``threshold``).

    By default it is the lowest threshold whose positive-class precision on test_in reaches `target`, but never below
    THRESHOLD_FLOOR. test_in is the easy case: it comes from the training folders and also picked the epoch, so a
    well-trained head reaches the target there at very low scores (0.12 for EfficientNet-Lite0 on the demo data), and
    at such a line most everyday photos from elsewhere get flagged (there, positive-class precision fell from 0.42 at
    0.5 to 0.26). The floor never lets precision out of distribution fall below what the paper's 0.5 gives.

    `calibrate_on` names a labelled test set the user vouches for as representative of the photos the model will
    check (their own market): the threshold is then chosen on it for `target`, with no floor, and that set's own
    numbers become optimistic.
    """
    chosen_on = calibrate_on or "test_in"
    if chosen_on not in scores:
        raise ValueError(f"no scores for {chosen_on!r} to choose the threshold on; test sets: {', '.join(scores)}")
    rule = threshold_for_precision(scores[chosen_on]["labels"], scores[chosen_on]["probabilities"], target) | {"chosen_on": chosen_on}
    if calibrate_on is None and rule["threshold"] < THRESHOLD_FLOOR:
        labels, probabilities = scores[chosen_on]["labels"], scores[chosen_on]["probabilities"]
        at_floor = compute_metrics(labels, probabilities, THRESHOLD_FLOOR)
        rule |= {
            "below_floor": rule["threshold"],
            "threshold": THRESHOLD_FLOOR,
            "precision": at_floor["positive_precision"],
            "recall": at_floor["positive_recall"],
            "met": at_floor["positive_precision"] >= target,
        }
    return rule


def tradeoff(scores: dict[str, dict], threshold: float) -> list[dict]:
    """What a threshold costs on each test set: images flagged, and the positive class's precision and recall."""
    rows = []
    for name, score in scores.items():
        m = compute_metrics(score["labels"], score["probabilities"], threshold)
        flagged = m["confusion_matrix"][0][1] + m["confusion_matrix"][1][1]
        rows.append(
            {
                "test set": name,
                "images": m["n_images"],
                "flagged": flagged,
                "precision (captive)": m["positive_precision"],
                "recall (captive)": m["positive_recall"],
            }
        )
    return rows


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name} was asked for, but no CUDA GPU is available here")
    return device


def compute_metrics(labels: Sequence[int], probabilities: Sequence[float], threshold: float = 0.5) -> dict:
    """accuracy, f_score, precision, recall (weighted, as in Tables S1-S3), positive_precision (Table 1), confusion."""
    labels = np.asarray(labels, dtype=int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    precision, recall, f_score, _ = precision_recall_fscore_support(labels, predicted, labels=[0, 1], average="weighted", zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f_score": float(f_score),
        "precision": float(precision),
        "recall": float(recall),
        "positive_precision": float(precision_score(labels, predicted, pos_label=1, zero_division=0)),
        "positive_recall": float(np.mean(predicted[labels == 1])) if (labels == 1).any() else 0.0,
        # rows: true negative, true positive; columns: predicted negative, predicted positive
        "confusion_matrix": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        "threshold": threshold,
        "n_images": len(labels),
    }


@dataclass
class Inference:
    """What a model said about the readable images of a loader, in loader order."""

    labels: torch.Tensor
    logits: torch.Tensor
    indices: torch.Tensor

    @property
    def probabilities(self) -> torch.Tensor:
        return inference.positive_probabilities(self.logits)

    def loss(self) -> float:
        return float(nn.functional.cross_entropy(self.logits.float(), self.labels)) if len(self.labels) else float("nan")


@torch.inference_mode()
def infer(model: nn.Module, loader, device: torch.device) -> Inference:
    """Logits for every readable image of `loader` (batches of (images, labels, indices))."""
    model.eval()
    labels, logits, indices = [], [], []
    for batch in loader:
        if batch is None:
            continue
        images, batch_labels, batch_indices = batch
        images = images.to(device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits.append(model(images).float().cpu())
        labels.append(batch_labels)
        indices.append(batch_indices)
    if not logits:
        empty = torch.empty(0, dtype=torch.long)
        return Inference(empty, torch.empty(0, 2), empty)
    return Inference(torch.cat(labels), torch.cat(logits), torch.cat(indices))


def evaluate_samples(
    model: nn.Module,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 64,
    num_workers: int = 0,
    normalisation: Normalisation = IMAGENET,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict, dict]:
    """The paper's metrics on `samples` (at 0.5), loss, evaluation time and unreadable images; and the raw scores.

    The scores (label and positive-class probability per readable image) let a reader recompute the
    metrics at any other threshold. `progress` is told how many images are done after each batch.
    """
    started = time.perf_counter()
    loader = make_loader(samples, train=False, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda", normalisation=normalisation)

    def reported():
        for number, batch in enumerate(loader, 1):
            yield batch
            progress(min(number * batch_size, len(samples)))

    return summarise(infer(model, loader if progress is None else reported(), device), samples, started)


def summarise(result: Inference, samples: Sequence[Sample], started: float) -> tuple[dict, dict]:
    """evaluate_samples' metrics and scores from what a model said about `samples` (a full forward pass, or the
    head on stored features: features.evaluate_stored); `started` is the perf_counter time the evaluation began."""
    if len(result.labels) == 0:
        raise ValueError("none of the images could be read, so nothing could be evaluated")
    labels, probabilities = result.labels.tolist(), result.probabilities.tolist()
    metrics = compute_metrics(labels, probabilities, PAPER_THRESHOLD)
    seen = set(result.indices.tolist())
    metrics.update(
        loss=result.loss(),
        eval_time_s=time.perf_counter() - started,
        skipped=[str(samples[i].path) for i in range(len(samples)) if i not in seen],
    )
    return metrics, {"labels": labels, "probabilities": [round(p, 6) for p in probabilities]}
