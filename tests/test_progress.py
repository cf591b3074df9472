"""Progress over every phase of a real run, as its process writes it into status.json (wildvision.training.progress)."""

import re

from conftest import SQUEEZENET_WEIGHTS, make_class_folder
from wildvision import runs
from wildvision.training import progress
from wildvision.training.config import TrainConfig
from wildvision.training.train import execute_run, start_run


def test_progress_names_every_phase_and_the_time_left_covers_the_phases_to_come(shared, tmp_path, monkeypatch):
    data = make_class_folder(tmp_path / "train", {"captive": 6, "wild": 6})
    test = make_class_folder(tmp_path / "test_out", {"captive": 2, "other": 2}, seed=5)
    config = TrainConfig(
        arch="squeezenet1_0",
        regime="transfer",
        data=str(data),
        weights=str(SQUEEZENET_WEIGHTS),
        lr=0.0001,
        epochs=2,
        batch_size=4,
        num_workers=0,
        device="cpu",
        tests={"test_out": str(test)},
    )
    run_dir = start_run(config, tmp_path / "runs", prepare=False)  # as the dashboard starts it: the process checks the photos
    written = []

    def recording(run_dir, state, **fields):
        status = write_status(run_dir, state, **fields)
        if status.get("progress"):
            written.append(dict(status["progress"]))
        return status

    write_status = runs.write_status
    monkeypatch.setattr(runs, "write_status", recording)
    monkeypatch.setattr(progress, "REPORT_EVERY_S", 0.0)  # every report is written, so every one can be checked
    execute_run(run_dir)

    phases = list(dict.fromkeys(report["phase"] for report in written))
    assert phases == ["checking", "comparison", "features", "epochs", "evaluation", "novelty"]
    assert {(report["phase"], report["step"], report["steps"]) for report in written} == {(phase, i + 1, 6) for i, phase in enumerate(phases)}
    words = [report["words"] for report in written]
    assert "computing stored features: 12 of 12 photos" in words and "epoch 2 of at most 2" in words
    assert any(re.fullmatch(r"scoring test_out with the default model for the comparison: 4 of 4 photos", w) for w in words)
    evaluated = [w for w in words if w.startswith("evaluating") and w.endswith("photos")]  # the count runs over all the sets
    assert evaluated and all(re.fullmatch(r"evaluating the test sets, now (test_in|test_out): \d+ of \d+ photos", w) for w in evaluated)
    assert any(w.startswith("fitting the unlike-the-training-photos summary") for w in words)

    epochs = [report for report in written if report["phase"] == "epochs"]
    before_timed = epochs[: next(i for i, r in enumerate(epochs) if r["words"] == "epoch 1 of at most 2 done")]
    assert before_timed and all(r["seconds_left"] is None for r in before_timed)  # not yet known, rather than a guess
    first_done = next(r for r in epochs if r["words"] == "epoch 1 of at most 2 done")
    assert first_done["seconds_left"] > first_done["phase_seconds_left"] >= 0  # the epoch to come, then evaluation and the summary

    evaluation = [report for report in written if report["phase"] == "evaluation" and report["total"]]
    last = evaluation[-1]
    assert last["done"] == last["total"] and last["phase_seconds_left"] == 0
    assert last["seconds_left"] > 0  # the summary's forward pass is still to come: not "under 0.1 s left"
    assert all(r["done"] < r["total"] for r in evaluation[:-1])
    assert runs.read_run(run_dir).status["progress"] is None and runs.read_run(run_dir).state == "completed"
