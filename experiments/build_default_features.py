"""Write wildvision/default_model/train_features.npz: what retraining the default model's head needs, shipped.

`python -m wildvision retrain` fits a new head on the base model's training photos plus a screening job's decided
photos (wildvision.screening.retrain). A fresh clone has no ../shared, so the default model's training photos are
shipped as their features: the pooled backbone output of each photo of its train split and of its test_in split
(the validation part the threshold is chosen on), float16, with their labels (1 = captive), compressed. The split is
train.prepare_data's with the default model's recipe (model_card.training_config), checked against its split.json,
as experiments/measure_novelty.py does. The features are those screening stores (inference.batches with
features=True: the evaluation view), and `backbone` records the digest of the weights that made them.

    python experiments/build_default_features.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from wildvision import novelty, runs
from wildvision.model_card import DEFAULT_DIR, training_config
from wildvision.predict import load_model
from wildvision.screening.job_features import describe
from wildvision.screening.retrain import DEFAULT_FEATURES
from wildvision.training.train import code_version, prepare_data

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="folder holding demo-data/ (default: ../shared)")
    args = parser.parse_args()
    demo = Path(args.shared).resolve() / "demo-data"
    train, test_in, _, _ = prepare_data(training_config(demo))
    shipped = runs.read_json(DEFAULT_DIR / runs.SPLIT)["test_in"]
    if sorted(str(s.path.relative_to(demo / "train")) for s in test_in) != sorted(shipped):
        raise SystemExit("the split differs from the default model's split.json: rebuild the default model first")
    loaded = load_model("default")
    arrays = {}
    for name, samples in (("train", train), ("test_in", test_in)):
        print(f"features of {len(samples):,} {name} photos ...", flush=True)
        features = novelty.backbone_features(loaded, [sample.path for sample in samples])
        readable = ~np.isnan(features[:, 0])
        arrays[name] = features[readable].astype(np.float16)
        arrays[f"{name}_labels"] = np.array([sample.label for sample in samples], dtype=np.uint8)[readable]
    description = describe(loaded)
    out = DEFAULT_DIR / DEFAULT_FEATURES
    np.savez_compressed(out, **arrays, arch=description.arch, backbone=description.backbone, code_version=code_version())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB: {len(arrays['train']):,} train and {len(arrays['test_in']):,} test_in photos)")


if __name__ == "__main__":
    main()
