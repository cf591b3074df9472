"""Exports of a real screening job (the shipped model on photos made here): the confirmed cases' CSV, the evidence pack
and the training folder, checked against the files screened, against wildvision.data and training's own checks."""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO, SHARED, make_class_folder
from wildvision import datacheck, photos, runs
from wildvision.cli import main
from wildvision.data import scan_folder
from wildvision.explain import saliency
from wildvision.screening import decisions
from wildvision.screening.config import ScreenConfig, write_config
from wildvision.screening.export import CASE_COLUMNS, PACK_COLUMNS, export_csv, export_evidence_pack
from wildvision.screening.job import screen
from wildvision.screening.training_export import MANIFEST_COLUMNS, export_training_folder, model_test_sets
from wildvision.training.config import TrainConfig
from wildvision.training.train import start_run

CAPTIVE, NEGATIVE = decisions.DEFAULT_CLASSES[1], decisions.DEFAULT_CLASSES[0]


def blob_photo(path: Path, seed: int) -> Path:
    """A smooth 240 x 180 photo (random colours, upsampled): unlike noise, its pHash survives resizing, as a real photo's does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((240, 180), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """One completed job over a folder (post 0-5.jpg, a byte-identical repost.jpg) and a zip (a photo and an unsafe
    member); returns the job folder and the bytes screened, by scores.csv path."""
    root = tmp_path_factory.mktemp("screened")
    folder = root / "scraped"
    originals = {f"post {i}.jpg": blob_photo(folder / f"post {i}.jpg", i).read_bytes() for i in range(6)}
    (folder / "repost.jpg").write_bytes(originals["post 1.jpg"])
    cage = blob_photo(root / "cage.png", 99).read_bytes()
    archive = root / "market.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("kennel/cage.png", cage)
        zipped.writestr("../escaped.jpg", originals["post 0.jpg"])
    job = screen([str(folder), str(archive)], screens_dir=root / "screens", name="market")
    by_path = {str(folder / name): data for name, data in originals.items()} | {str(folder / "repost.jpg"): originals["post 1.jpg"]}
    return job, by_path | {f"{archive}/kennel/cage.png": cage}


@pytest.fixture
def job(screened, tmp_path, monkeypatch) -> Path:
    """A copy of the screened job, so each test records its own decisions; no ../shared, so the shipped model's test
    sets are not on this machine unless a test says so."""
    monkeypatch.setenv("WILDVISION_SHARED", str(tmp_path / "no-shared"))
    return Path(shutil.copytree(screened[0], tmp_path / "job"))


def path_of(job: Path, name: str) -> str:
    """The scores.csv path whose file name is `name`."""
    (path,) = [path for path in decisions.scored_items(job) if Path(path).name == name]
    return path


def decide_some(job: Path) -> dict[str, str]:
    """Four photos (one a repost) captive, two not, one unsure; returns each decided name's label."""
    labels = {"post 0.jpg": CAPTIVE, "post 1.jpg": CAPTIVE, "repost.jpg": CAPTIVE, "cage.png": CAPTIVE, "post 2.jpg": NEGATIVE, "post 5.jpg": NEGATIVE}
    for name, label in labels.items():
        decisions.decide(job, [path_of(job, name)], label, "ana", note="bars and a price tag" if name == "post 0.jpg" else None)
    decisions.decide(job, [path_of(job, "post 3.jpg")], decisions.UNSURE, "ben")
    return labels


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_lists_the_confirmed_cases_in_screening_order(job, tmp_path):
    decide_some(job)
    scores = decisions.scored_items(job)
    written = export_csv(job, tmp_path / "cases.csv")

    rows = read_csv((tmp_path / "cases.csv").read_text(encoding="utf-8"))
    assert written.cases == len(rows) == 4 and list(rows[0]) == CASE_COLUMNS
    assert [Path(row["path"]).name for row in rows] == ["post 0.jpg", "post 1.jpg", "repost.jpg", "cage.png"]  # list order
    for row in rows:
        assert (row["sha256"], row["probability"]) == (scores[row["path"]]["sha256"], scores[row["path"]]["probability"])
        assert row["decision"] == CAPTIVE and row["reviewer"] == "ana" and row["decided_at"].endswith("+00:00")
    assert rows[0]["note"] == "bars and a price tag" and rows[1]["note"] == ""


def test_the_evidence_pack_holds_the_photos_as_screened_their_maps_and_a_readme(job, screened, tmp_path):
    decide_some(job)
    unsafe = path_of(job, "escaped.jpg")  # an unsafe zip member: a row the model could not read, decided anyway
    decisions.decide(job, [unsafe], CAPTIVE, "ana")

    pack = export_evidence_pack(job, tmp_path / "pack.zip")

    with zipfile.ZipFile(tmp_path / "pack.zip") as archive:
        names = archive.namelist()
        assert sorted(names) == sorted(pack.members) and names[-2:] == ["cases.csv", "README.txt"]
        rows = read_csv(archive.read("cases.csv").decode())
        readme = archive.read("README.txt").decode()
        assert list(rows[0]) == PACK_COLUMNS and len(rows) == pack.cases == 5
        for row in rows[:4]:
            assert archive.read(row["image"]) == screened[1][row["path"]]  # byte for byte what was screened
            with Image.open(io.BytesIO(archive.read(row["saliency"]))) as overlay:
                assert overlay.format == "PNG" and overlay.size == Image.open(io.BytesIO(screened[1][row["path"]])).size
        images = [row["image"] for row in rows]
    assert images[:4] == ["images/000001-post-0.jpg", "images/000002-post-1.jpg", "images/000007-repost.jpg", "images/000008-cage.png"]
    assert rows[4]["path"] == unsafe and rows[4]["image"] == rows[4]["saliency"] == ""
    assert [s.path for s in pack.skipped] == [unsafe] and "could not read it when screening" in pack.skipped[0].reason
    assert len(pack.images) == len(pack.saliency_maps) == 4
    for words in (job.name, "Model: default (efficientnet_lite0", "Threshold: 0.5", "Exported: ", "where the model looked", "not proof", unsafe):
        assert words in readme
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class Killed(BaseException):
    """Stands for the process being killed halfway through writing."""


def test_a_pack_killed_halfway_leaves_nothing_under_its_name(job, tmp_path, monkeypatch):
    decide_some(job)
    out = tmp_path / "pack.zip"
    out.write_bytes(b"an earlier pack")

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(saliency, "overlay", killed)
    with pytest.raises(Killed):
        export_evidence_pack(job, out)
    assert out.read_bytes() == b"an earlier pack"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_the_training_folder_is_training_data_with_its_manifest_links_and_test_overlap(job, screened, tmp_path):
    decide_some(job)
    base = make_class_folder(tmp_path / "base", {"captive": 4, "wild": 4, "background": 3})
    test = tmp_path / "test_out_mine"
    (test / "captive").mkdir(parents=True)
    (test / "captive" / "same.jpg").write_bytes(screened[1][path_of(job, "post 0.jpg")])  # identical to a confirmed photo
    with Image.open(io.BytesIO(screened[1][path_of(job, "post 2.jpg")])) as photo:  # a smaller re-encoded copy of a negative one
        photo.resize((180, 135)).save(test / "captive" / "resized.jpg", quality=70)
    blob_photo(test / "other" / "unrelated.jpg", 1234)
    out = tmp_path / "training"

    folder = export_training_folder(job, out, include=[base], test_sets={"mine": test})

    reviewed = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and "reviewed" in p.parts}
    assert (
        reviewed
        == set(folder.files)
        == {
            "captive/reviewed/000001-post-0.jpg",
            "captive/reviewed/000002-post-1.jpg",  # repost.jpg has the same bytes and label: written once
            "captive/reviewed/000008-cage.png",
            "not_captive/reviewed/000003-post-2.jpg",
            "not_captive/reviewed/000006-post-5.jpg",
        }
    )
    assert folder.counts == {CAPTIVE: 3, NEGATIVE: 2} and not folder.skipped and not folder.conflicts
    for file in folder.files:
        assert not (out / file).is_symlink() and (out / file).stat().st_nlink == 1  # copied: the job may be deleted
    assert (out / "captive/reviewed/000008-cage.png").read_bytes() == screened[1][path_of(job, "cage.png")]
    for class_name in ("captive", "wild", "background"):
        link = out / class_name / "base"
        assert link.is_symlink() and link.resolve() == (base / class_name).resolve()
    assert {(i.link.relative_to(out).as_posix(), i.images) for i in folder.included} == {("background/base", 3), ("captive/base", 4), ("wild/base", 4)}
    assert not (out / decisions.UNSURE).exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    manifest = read_csv((out / "manifest.csv").read_text(encoding="utf-8"))
    assert list(manifest[0]) == MANIFEST_COLUMNS and len(manifest) == 6  # one row per decision, the repost too
    by_source = {Path(row["source_path"]).name: row for row in manifest}
    assert by_source["repost.jpg"]["file"] == by_source["post 1.jpg"]["file"] == "captive/reviewed/000002-post-1.jpg"
    assert by_source["post 2.jpg"]["class"] == NEGATIVE and {row["screening_job"] for row in manifest} == {job.name}
    assert by_source["post 0.jpg"]["test_overlap"] == f"mine:{test / 'captive' / 'same.jpg'}"
    assert by_source["post 0.jpg"]["sha256"] == decisions.scored_items(job)[path_of(job, "post 0.jpg")]["sha256"]

    overlap = read_csv((out / "test_overlap.csv").read_text(encoding="utf-8"))
    assert [(row["file"], Path(row["test_image"]).name, row["match"]) for row in overlap] == [
        ("captive/reviewed/000001-post-0.jpg", "same.jpg", "identical"),
        ("not_captive/reviewed/000003-post-2.jpg", "resized.jpg", "near-duplicate"),
    ]
    assert 0 < folder.overlaps[1].distance <= photos.PHASH_THRESHOLD

    samples = scan_folder(out, CAPTIVE, with_background=True)  # what `train --data` reads
    assert len(samples) == 5 + 4 + 4 + 3
    assert {(s.class_name, s.label) for s in samples} == {("captive", 1), ("not_captive", 0), ("wild", 0), ("background", 0)}
    assert datacheck.run_check([str(out)], [], CAPTIVE) != 2  # `data check DIR` accepts it

    config = TrainConfig(arch="squeezenet1_0", regime="transfer", data=str(out), with_background=True, tests={"mine": str(test)}, exclude_test_duplicates=True)
    run = runs.read_run(start_run(config, tmp_path / "runs"))  # training's own checks and split, without training
    excluded = {Path(file).name for entry in run.config["excluded"] for file in entry["files"]}
    assert excluded and excluded <= {"same.jpg", "resized.jpg"}  # what training leaves out, the export reported


def test_model_test_sets_are_a_runs_tests_that_exist_here(tmp_path, monkeypatch):
    kept = tmp_path / "test_out_pet"
    kept.mkdir()
    run_dir = tmp_path / "runs" / "resnet18-transfer-bg"
    run_dir.mkdir(parents=True)
    runs.write_json_atomic(run_dir / runs.CONFIG, {"train": {"tests": {"test_out_pet": str(kept), "gone": str(tmp_path / "gone")}}})
    job = tmp_path / "job"
    job.mkdir()
    config = ScreenConfig(model=str(run_dir), model_file=str(run_dir / runs.CHECKPOINT), sources=(), sources_as_given=())
    write_config(job, config)
    assert model_test_sets(job) == {"test_out_pet": kept}

    write_config(job, replace(config, model="default", model_file="default"))
    monkeypatch.setenv("WILDVISION_SHARED", str(tmp_path / "no-shared"))
    assert model_test_sets(job) == {}


def test_the_shipped_models_test_sets_are_the_demo_datas(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("WILDVISION_SHARED", str(SHARED))
    write_config(tmp_path, ScreenConfig(model="default", model_file="default", sources=(), sources_as_given=()))
    assert model_test_sets(tmp_path) == {"test_out_pet": DEMO / "test_out_pet", "test_out_nopet": DEMO / "test_out_nopet"}


def test_the_command_writes_all_three_and_suggests_leaving_test_copies_out(job, screened, tmp_path, capsys):
    decide_some(job)
    base = make_class_folder(tmp_path / "base", {"captive": 3, "wild": 3})
    test = tmp_path / "test"
    (test / "captive").mkdir(parents=True)
    (test / "captive" / "same.jpg").write_bytes(screened[1][path_of(job, "cage.png")])
    out = tmp_path / "out"
    out.mkdir()
    args = ["export", str(job), "--csv", str(out / "cases.csv"), "--zip", str(out / "pack.zip"), "--training-folder", str(out / "training")]

    assert main([*args, "--include", str(base), "--test-set", f"mine={test}"]) == 0

    printed = capsys.readouterr().out
    assert f"wrote 4 confirmed cases to {out / 'cases.csv'}" in printed
    assert "wrote evidence pack" in printed and "4 photos, 4 saliency maps" in printed
    assert "5 reviewed photos (captive 3, not_captive 2)" in printed and "linked captive/base" in printed
    assert "1 reviewed photo is the same photo as a test-set image" in printed
    assert "--exclude-test-duplicates" in printed and f"--data {out / 'training'}" in printed and f"--test mine={test}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["cases.csv", "pack.zip", "training"]


def test_photos_gone_since_screening_are_left_out_and_named(job, tmp_path, capsys):
    decide_some(job)
    gone = path_of(job, "post 5.jpg")
    decisions.decide(job, [path_of(job, "post 4.jpg")], NEGATIVE, "ana")
    shutil.copy(gone, tmp_path / "kept.jpg")
    os.unlink(gone)
    try:
        code = main(["export", str(job), "--zip", str(tmp_path / "pack.zip"), "--no-saliency", "--training-folder", str(tmp_path / "training")])
    finally:
        shutil.copy(tmp_path / "kept.jpg", gone)  # the module's job folder lists the same files
    assert code == 1
    assert f"left out {gone}: {gone} is gone (moved or deleted since screening)" in capsys.readouterr().err
    assert (tmp_path / "training" / "not_captive" / "reviewed" / "000005-post-4.jpg").is_file()
    with zipfile.ZipFile(tmp_path / "pack.zip") as archive:
        assert not [name for name in archive.namelist() if name.startswith("saliency/")]


def refused(args: list[str], capsys) -> str:
    """The one-line message of a refused export (exit code 2)."""
    assert main(args) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in message
    return message


def test_refusals_say_why_and_write_nothing(job, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    csv_out, training = str(out / "cases.csv"), str(out / "training")
    assert "is not a screening folder" in refused(["export", str(tmp_path), "--csv", csv_out], capsys)
    assert "no confirmed cases" in refused(["export", str(job), "--csv", csv_out], capsys)
    assert not (job / decisions.DATABASE).exists()  # looking did not create a decision store
    assert "say what to export" in refused(["export", str(job)], capsys)

    decisions.decide(job, [path_of(job, "post 3.jpg")], decisions.UNSURE, "ana")
    assert "nothing in" in refused(["export", str(job), "--training-folder", training], capsys)
    decisions.decide(job, [path_of(job, "post 0.jpg"), path_of(job, "post 1.jpg")], CAPTIVE, "ana")
    assert "no negative photos" in refused(["export", str(job), "--training-folder", training], capsys)
    decisions.decide(job, [path_of(job, "post 2.jpg")], NEGATIVE, "ana")
    assert "not_captive would hold fewer than 2 photos" in refused(["export", str(job), "--training-folder", training], capsys)
    assert "no positive class folder 'captive/'" in refused(["export", str(job), "--training-folder", training, "--include", str(out)], capsys)
    assert "go with --training-folder" in refused(["export", str(job), "--csv", csv_out, "--include", str(out)], capsys)

    (out / "training").mkdir()
    (out / "training" / "notes.txt").write_text("someone's")
    message = refused(["export", str(job), "--csv", csv_out, "--training-folder", training], capsys)
    assert "already exists and is not an empty folder" in message
    assert sorted(p.name for p in out.iterdir()) == ["training"] and os.listdir(out / "training") == ["notes.txt"]  # not even the CSV
    assert "does not exist" in refused(["export", str(job), "--zip", str(tmp_path / "missing" / "pack.zip")], capsys)
    assert "is a folder" in refused(["export", str(job), "--csv", str(out)], capsys)

    runs.write_status(job, "failed", message="killed")
    assert "is failed, not completed" in refused(["export", str(job), "--csv", csv_out], capsys)
