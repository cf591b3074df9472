import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from wildvision import runs


def test_run_folders_created_at_once_with_the_same_name_never_collide(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: runs.create_run_dir(tmp_path, "same"), range(32)))
    assert len(set(folders)) == 32 and all(f.parent == tmp_path for f in folders)


def test_run_names_cannot_escape_the_runs_folder(tmp_path):
    folder = runs.create_run_dir(tmp_path / "runs", "../../etc/passwd")
    assert folder.parent == tmp_path / "runs"
    assert ".." not in folder.name and "/" not in folder.name


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "x.json"
    runs.write_json_atomic(path, {"a": 1})
    runs.write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_running_run_whose_process_died_reads_as_interrupted(tmp_path):
    run_dir = runs.create_run_dir(tmp_path, "r")
    runs.write_json_atomic(run_dir / runs.CONFIG, {"train": {}})
    child = subprocess.run(
        [sys.executable, "-c", f"from wildvision import runs; from pathlib import Path; runs.write_status(Path({str(run_dir)!r}), 'running')"],
        check=True,
    )
    assert child.returncode == 0
    assert runs.read_run(run_dir).status["state"] == "running"
    assert runs.read_run(run_dir).state == runs.INTERRUPTED
    runs.write_status(run_dir, "running")  # this process is alive
    assert runs.read_run(run_dir).state == "running"


def test_metrics_truncate_drops_epochs_after_the_resume_point(tmp_path):
    for epoch in (1, 2, 3):
        runs.append_metrics(tmp_path, {"epoch": epoch})
    runs.truncate_metrics(tmp_path, 2)
    assert [row["epoch"] for row in runs.read_metrics(tmp_path)] == [1, 2]
