"""Shared fixtures. Tests that need ../shared (demo photos, offline weights) ask for `shared`.

On a fresh clone without ../shared they skip and say why; CI sets WILDVISION_REQUIRE_SHARED=1,
which turns that skip into a failure so the integration tests always run there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wildvision.shared import shared_folder

SHARED = shared_folder()
SQUEEZENET_WEIGHTS = SHARED / "weights" / "squeezenet1_0-imagenet-deepcompression.pth"
DEMO = SHARED / "demo-data"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (DEMO / "train").is_dir() or not SQUEEZENET_WEIGHTS.is_file():
        message = f"needs the demo data and offline weights in {SHARED} (absent on a fresh clone; set WILDVISION_SHARED to point elsewhere)"
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; WILDVISION_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory) -> Path:
    """One image and feature cache for the whole session, so tests never write into the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    os.environ["WILDVISION_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def default_settings(tmp_path_factory) -> Path:
    """The settings' defaults (no settings file) unless a test writes one: a settings.toml in the clone never leaks in."""
    path = tmp_path_factory.mktemp("settings") / "absent.toml"
    os.environ["WILDVISION_SETTINGS"] = str(path)
    return path


def team_settings(monkeypatch, folder: Path, text: str) -> Path:
    """Write `text` as the server's settings file in `folder` and make it the one read (wildvision.settings)."""
    path = folder / "settings.toml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("WILDVISION_SETTINGS", str(path))
    return path


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    """An empty runs folder that the dashboard pages use (through WILDVISION_RUNS_DIR)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    monkeypatch.setenv("WILDVISION_RUNS_DIR", str(folder))
    return folder


def write_image(path: Path, seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Path:
    """A small random-noise image; different seeds give different content (and hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def make_class_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    """root/<class>/img<i>.png with counts[class] generated images each."""
    for offset, (class_name, count) in enumerate(counts.items()):
        for index in range(count):
            write_image(root / class_name / f"img{index}.png", seed=seed * 10_000 + offset * 1000 + index)
    return root


def demo_subset(tmp_path: Path, per_class: dict[str, int], source: str = "train") -> Path:
    """A folder of symlinks to the first images of each demo-data class (people link their datasets too)."""
    root = tmp_path / source
    for class_name, count in per_class.items():
        (root / class_name).mkdir(parents=True)
        for image in sorted((DEMO / source / class_name).iterdir())[:count]:
            (root / class_name / image.name).symlink_to(image)
    return root


def slow_squeezenet_config(data: Path, epochs: int, **overrides):
    """A small SqueezeNet transfer run on `data` from the shipped offline weights, on the plain loop (feature_views=0):
    epochs on stored features could all finish before a cancel arrives, and these runs are there to be cancelled."""
    from wildvision.training.config import TrainConfig

    return TrainConfig(
        arch="squeezenet1_0",
        regime="transfer",
        data=str(data),
        weights=str(SQUEEZENET_WEIGHTS),
        epochs=epochs,
        batch_size=8,
        lr=0.0001,
        num_workers=0,
        device="cpu",
        feature_views=0,
        **overrides,
    )


def train_args(data, runs_dir, *extra) -> tuple[str, ...]:
    """`python -m wildvision` arguments for a small SqueezeNet transfer run on `data` (the shipped offline weights)."""
    return (
        "train",
        "--arch",
        "squeezenet1_0",
        "--regime",
        "transfer",
        "--data",
        str(data),
        "--with-background",
        "--weights",
        str(SQUEEZENET_WEIGHTS),
        "--lr",
        "0.0001",
        "--batch-size",
        "16",
        "--runs-dir",
        str(runs_dir),
        "--workers",
        "1",
        *extra,
    )


@pytest.fixture(scope="session")
def completed_run(shared, tmp_path_factory) -> Path:
    """One real, completed transfer run of SqueezeNet on a small demo-data subset, trained once per session."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("completed_run")
    data = demo_subset(tmp, {"captive": 60, "wild": 60, "background": 20})
    test = demo_subset(tmp, {"captive": 20, "other": 40}, source="test_out_pet")
    result = subprocess.run(
        [sys.executable, "-m", "wildvision", *train_args(data, tmp / "runs", "--epochs", "3", "--test", f"test_out_pet={test}")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp / "runs").iterdir()
    return run_dir


@pytest.fixture(scope="session")
def screened_job(shared, tmp_path_factory) -> Path:
    """One completed screening job with the shipped model: 12 captive and 12 other photos from test_out_pet, a
    byte-identical repost of the first captive one and a corrupt file. Tests that decide anything take a copy_job."""
    from wildvision.screening.job import screen

    folder = tmp_path_factory.mktemp("market")
    for class_name in ("captive", "other"):
        (folder / class_name).mkdir()
        for photo in sorted((DEMO / "test_out_pet" / class_name).iterdir())[:12]:
            (folder / class_name / photo.name).symlink_to(photo)
    (folder / "repost.jpg").write_bytes(min((folder / "captive").iterdir()).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a photo")
    return screen([str(folder)], screens_dir=tmp_path_factory.mktemp("screens"), name="market")


@pytest.fixture(scope="session")
def audit_market(shared, tmp_path_factory) -> Path:
    """A completed screening job over 24 captive and 24 other photos of test_out_pet with the shipped model: enough
    for an audit of 40 distinct photos. Tests that decide anything take a copy_job."""
    from wildvision.screening.job import screen

    folder = demo_subset(tmp_path_factory.mktemp("audited"), {"captive": 24, "other": 24}, source="test_out_pet")
    return screen([str(folder)], screens_dir=tmp_path_factory.mktemp("screens"), name="audited")


@pytest.fixture(scope="session")
def partial_job(shared, tmp_path_factory) -> Path:
    """A screening job cancelled part-way, with the shipped model: 6 captive and 6 other photos from test_out_pet, a
    repost of the first captive one listed first and another copy of it listed last, scored in parts of 4 files of
    which only the even-numbered ones were written (shard 0/2), as a cancel between parts leaves a job. Rows 0-3 and
    8-11 of 14 are scored: the repost and its original, not the last copy. Tests that decide anything take a copy_job."""
    from wildvision import runs
    from wildvision.predict import load_model
    from wildvision.screening.job import CANCELLED_MESSAGE, create_screen, finish_screen

    folder = tmp_path_factory.mktemp("market-partial")
    for class_name in ("captive", "other"):
        (folder / class_name).mkdir()
        for photo in sorted((DEMO / "test_out_pet" / class_name).iterdir())[:6]:
            (folder / class_name / photo.name).symlink_to(photo)
    original = min((folder / "captive").iterdir()).read_bytes()
    (folder / "repost.jpg").write_bytes(original)
    (folder / "other" / "zz-copy.jpg").write_bytes(original)
    loaded = load_model("default", device="cpu")
    job = create_screen([str(folder)], "default", loaded, 4, tmp_path_factory.mktemp("screens"), "partial", part_batches=1)
    finish_screen(job, loaded, shard=(0, 2))
    runs.write_status(job, "cancelled", message=CANCELLED_MESSAGE)
    return job


@pytest.fixture
def market_job(audit_market, tmp_path, monkeypatch, runs_dir) -> Path:
    """A copy of audit_market of this test's own, in the screens folder the Review page reads."""
    screens = tmp_path / "screens"
    screens.mkdir()
    monkeypatch.setenv("WILDVISION_SCREENS_DIR", str(screens))
    return copy_job(audit_market, screens)


def copy_job(job: Path, screens_dir: Path) -> Path:
    """A copy of a screening job folder under `screens_dir`, so decisions made on it stay with one test."""
    import shutil

    return Path(shutil.copytree(job, screens_dir / job.name))


def wait_until(read, predicate, timeout_s: float = 300, interval_s: float = 0.3, describe=repr):
    """Call `read()` until `predicate` holds of what it returns, and return that; on timeout, fail with describe(last)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = read()
        if predicate(value):
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out; last: {describe(read())}")


@pytest.fixture(scope="module")
def paper_frame(tmp_path_factory):
    """The paper's numbers alone, as the analysis pages get them on a machine without runs."""
    from helpers import frame_of

    return frame_of(tmp_path_factory.mktemp("no-runs"))


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        message = "needs Debian's chromium (apt-get install chromium)"
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; CI installs it")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def downloads(monkeypatch) -> list[bytes]:
    """The CSV files an AppTest page offers for download, as bytes (AppTest keeps only their URLs)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    saved: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, path_or_data, mimetype, kind, filename=None):
        if mimetype == "text/csv":
            saved.append(path_or_data)
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return saved
