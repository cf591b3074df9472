"""Which photos a run trains and tests on: its train/test_in split with every photo used once, and its test sets.

Kept apart from the training loop (wildvision.training.train): the split and the checks for copies and label conflicts are
read by the run's process before it trains (train.prepare_run), and by experiments that re-derive a split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from wildvision import runs
from wildvision.data import DataFolderError, Sample, scan_folder, stratified_split
from wildvision.datacheck import sample_groups, test_duplicates
from wildvision.training.config import TrainConfig

MIN_CLASS_PHOTOS = 2  # the stratified split needs a photo of every class folder on each side


def samples_in_split(config: TrainConfig, split: dict, source: str) -> tuple[list[Sample], list[Sample]]:
    """The train and test_in samples a saved split names, looked up in the data folder as it is now."""
    by_path = {str(s.path.relative_to(config.data)): s for s in scan_folder(config.data, config.positive, config.with_background)}
    parts = []
    for part in ("train", "test_in"):
        missing = [p for p in split[part] if p not in by_path]
        if missing:
            raise ValueError(f"{source} names {len(missing)} files not in {config.data}, e.g. {missing[0]}")
        parts.append([by_path[p] for p in split[part]])
    return parts[0], parts[1]


def check_folders(config: TrainConfig) -> None:
    """Raise now, before a run folder is made, when the training folder, a test folder or a saved split cannot be used:
    a listing of the folders, which takes a moment (the split and the checks for copies take longer, prepare_data)."""
    if config.split:
        samples_in_split(config, runs.read_json(Path(config.split)), f"split {config.split}")
    else:
        counts = Counter(sample.class_name for sample in scan_folder(config.data, config.positive, config.with_background))
        for name, count in sorted(counts.items()):
            if count < MIN_CLASS_PHOTOS:
                raise DataFolderError(
                    f"class folder {Path(config.data) / name} holds only {count} photo: the split puts photos of every class "
                    f"folder in both train and test_in, so each needs at least {MIN_CLASS_PHOTOS}"
                )
    prepare_tests(config)


def prepare_data(config: TrainConfig) -> tuple[list[Sample], list[Sample], dict[str, list[Sample]], list[dict]]:
    """Scan and split the training folder and scan every test folder; raise before any training if one is unusable.

    Returns train, test_in, the test sets and what was left out of train and test_in ({"files", "reason"},
    paths relative to the data folder). A saved split is taken as it is.
    """
    if config.split:
        train, test_in = samples_in_split(config, runs.read_json(Path(config.split)), f"split {config.split}")
        return train, test_in, prepare_tests(config), []
    train, test_in, left_out = split_distinct(scan_folder(config.data, config.positive, config.with_background), config)
    return train, test_in, prepare_tests(config), left_out


def split_distinct(samples: list[Sample], config: TrainConfig) -> tuple[list[Sample], list[Sample], list[dict]]:
    """The train/test_in split with every photo used once: copies of a photo (identical or near, `datacheck`) stay on
    one side and only the first is kept, and a photo under both the positive and a negative class (a label conflict)
    is left out of both, since its label cannot be trusted. Returns train, test_in and what was left out, and why."""
    relative = lambda sample: str(sample.path.relative_to(config.data))
    left_out, conflicted, group_of = [], set(), {}
    for number, group in enumerate(sample_groups(samples)):
        if len({s.label for s in group}) == 2:
            conflicted |= {s.path for s in group}
            places = " and ".join(sorted({f"{s.class_name}/" for s in group}))
            left_out.append({"files": [relative(s) for s in group], "reason": f"label conflict: one photo under {places}"})
        else:
            group_of |= {s.path: number for s in group}
    kept = [s for s in samples if s.path not in conflicted]
    ids = [group_of.get(s.path, -1 - index) for index, s in enumerate(kept)]  # a photo without copies is its own group
    train, test_in = stratified_split(kept, config.test_fraction, config.seed, ids)
    parts = []
    for part_name, part in (("train", train), ("test_in", test_in)):
        first: dict[int, Sample] = {}
        copies: dict[int, list[Sample]] = {}
        for sample in part:
            number = group_of.get(sample.path)
            if number in first:
                copies.setdefault(number, []).append(sample)
            elif number is not None:
                first[number] = sample
        left_out += [
            {"files": [relative(s) for s in group], "reason": f"copies of {relative(first[number])}, which {part_name} keeps"}
            for number, group in copies.items()
        ]
        dropped = {s.path for group in copies.values() for s in group}
        parts.append([s for s in part if s.path not in dropped])
    return parts[0], parts[1], left_out


def split_record(config: TrainConfig, train: list[Sample], test_in: list[Sample], left_out: list[dict]) -> dict:
    relative = lambda part: [str(s.path.relative_to(config.data)) for s in part]
    return {"data": config.data, "seed": config.seed, "train": relative(train), "test_in": relative(test_in), "left_out": left_out}


def leak_warnings(leaks: dict[str, list[tuple[Path, Path]]], test_sets: dict[str, list[Sample]], excluded: bool) -> list[str]:
    consequence = "they are left out of it" if excluded else "its scores will overstate performance on unseen photos"
    return [
        f"{len(pairs)} of the {len(test_sets[name])} images of {name} are identical or nearly identical to training images "
        f"(e.g. {pairs[0][0]} and {pairs[0][1]}): {consequence}"
        for name, pairs in leaks.items()
    ]


def without(tests: dict[str, list[Sample]], leaks: dict[str, list[tuple[Path, Path]]]) -> dict[str, list[Sample]]:
    """The test sets without their images that duplicate training images."""
    return {name: [s for s in samples if s.path not in {test for test, _ in leaks.get(name, [])}] for name, samples in tests.items()}


def prepare_tests(config: TrainConfig, train: list[Sample] | None = None) -> dict[str, list[Sample]]:
    """Every --test folder, scanned: all of its non-positive folders are negatives. With `exclude_test_duplicates`
    and the run's `train` samples, images that are one photo with a training image are left out."""
    tests = {name: scan_folder(folder, config.positive, with_background=True) for name, folder in config.tests.items()}
    if config.exclude_test_duplicates and train:
        tests = without(tests, test_duplicates(train, tests))
    return tests
