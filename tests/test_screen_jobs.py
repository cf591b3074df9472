"""Screening jobs in the background and on SLURM: launched, followed, cancelled mid-way, resumed, sharded.

The background tests run the real detached process on real demo photos with the shipped default model; the SLURM
tests check the batch script of a dry run and score every shard in this process, as the array's tasks would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import demo_subset, make_class_folder
from conftest import wait_until as poll
from helpers import read_scores
from wildvision import cli, runs, slurm
from wildvision.predict import CheckpointError, load_model
from wildvision.screening import background
from wildvision.screening.config import FILES, PARTS, SCORES
from wildvision.screening.job import create_screen, finish_screen, new_screen, resume_screen
from wildvision.screening.scoring import parse_shard, rows_done
from wildvision.screening.sources import read_file_list


def wait_for(screen_dir: Path, predicate, timeout_s: float = 300) -> background.ScreenSummary:
    def described(summary: background.ScreenSummary) -> str:
        log = screen_dir / "console.log"
        return f"{summary}\n{log.read_text(errors='replace')[-3000:] if log.exists() else ''}"

    return poll(lambda: background.read_screen(screen_dir), predicate, timeout_s, interval_s=0.2, describe=described)


def test_a_background_job_is_followed_through_the_job_list_to_completion(shared, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 6, "wild": 6})
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a photo")
    screens = tmp_path / "screens"
    with pytest.raises(ValueError, match="no such file or folder: nowhere"):
        background.launch_screen([str(folder), "nowhere"], "default", screens)
    with pytest.raises(CheckpointError, match="neither a checkpoint file nor a run folder"):
        background.launch_screen([str(folder)], "no-such-run", screens)
    assert not screens.exists() or not any(screens.iterdir()), "nothing is created for a job that cannot start"

    started = time.monotonic()
    screen_dir = background.launch_screen([str(folder)], "default", screens, name="market")
    assert time.monotonic() - started < 3, "the page's script run lists nothing and loads no model"
    assert runs.read_json(screen_dir / runs.CONFIG)["files"] is None  # listing is the background process's work
    first = background.read_screen(screen_dir)
    assert first.state in ("queued", "running") and first.name.startswith("market-") and first.sources == (str(folder),)
    command = Path(f"/proc/{first.status['pid']}/cmdline").read_bytes().decode().split("\0")
    if command[1:3] == ["-m", "wildvision.job_queue"]:  # still waiting for its turn: QUEUE_DIR SLOTS, then the job's command
        command = command[:1] + ["-m"] + command[5:]
    assert command[1:5] == ["-m", "wildvision", "screen", "--resume"], command

    done = wait_for(screen_dir, lambda s: s.state not in ("queued", "running"))
    assert done.state == "completed", done
    (listed,) = background.list_screens(screens)
    assert listed == done
    assert (done.total, done.done, done.unreadable, done.positive_class) == (13, 13, 1, "captive")
    assert done.architecture == load_model("default").arch and done.threshold == load_model("default").threshold
    assert done.scores == screen_dir / SCORES and done.model == "default" and done.seconds_left is None
    rows = read_scores(screen_dir)
    flagged = [row for row in rows if row["label"] == "captive"]
    assert done.flagged == len(flagged) and done.flagged_photos == len({row["duplicate_group"] for row in flagged})
    assert done.distinct_photos == len({row["duplicate_group"] for row in rows if not row["error"]}) == 12, "broken.jpg is a file, not a photo"
    line = background.screen_progress_line(done)
    assert line == f"screened 13 files: 12 distinct photos, {done.flagged} files / {done.flagged_photos} distinct photos flagged captive, 1 file unreadable"
    log = (screen_dir / "console.log").read_text()
    assert "listed 13 files\n" in log and "screened 13 / 13 files" in log
    assert f"{line}; scores in {screen_dir / SCORES}\n" in log, "the log says the job list's numbers"
    with pytest.raises(runs.RunError, match="completed; only a queued or running job can be cancelled"):
        background.cancel_screen(screen_dir)
    with pytest.raises(runs.RunError, match="completed; only interrupted, failed or cancelled"):
        background.resume_screen_in_background(screen_dir)


def test_a_job_cancelled_mid_way_keeps_its_parts_and_a_resume_scores_each_file_once(shared, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 120, "wild": 120})
    screen_dir = background.launch_screen([str(folder)], "default", tmp_path / "screens", part_batches=1)  # a part every 8 images
    running = wait_for(screen_dir, lambda s: s.state != "queued" and s.done >= 16 or s.state not in ("queued", "running"))
    assert running.state == "running" and running.total == 240, running
    background.cancel_screen(screen_dir)
    cancelled = wait_for(screen_dir, lambda s: s.state != "running", timeout_s=60)
    assert cancelled.state == "cancelled" and "resum" in cancelled.message, cancelled
    kept = rows_done(screen_dir, 8, 240)
    assert 16 <= kept < 240, "cancelled between its parts, which it keeps"
    assert not (screen_dir / SCORES).exists()
    assert background.screen_progress_line(cancelled) == f"cancelled after {cancelled.done:,} of 240 files; resume scores the rest"
    with pytest.raises(runs.RunError, match="cancelled; only a queued or running job can be cancelled"):
        background.cancel_screen(screen_dir)

    background.resume_screen_in_background(screen_dir)
    done = wait_for(screen_dir, lambda s: s.state in ("completed", "failed", "cancelled") and s.status.get("pid") != cancelled.status.get("pid"))
    assert done.state == "completed", done
    rows = read_scores(screen_dir)
    listed = [row.path for row in read_file_list(screen_dir)]
    assert [row["path"] for row in rows] == listed and len(set(listed)) == 240, "every file scored exactly once, in list order"
    assert all(row["probability"] and not row["error"] for row in rows)
    log = (screen_dir / "console.log").read_text()
    assert f"screened {kept:,} / 240 files\n" in log, "the resumed process started from the parts the cancelled one kept"


def test_a_queued_job_is_marked_cancelled_and_broken_folders_never_raise(tmp_path):
    screens = tmp_path / "screens"
    folder = make_class_folder(tmp_path / "photos", {"a": 2})
    queued = new_screen([str(folder)], "default", screens, name="later")  # made, never started
    assert background.screen_progress_line(background.read_screen(queued)) == "waiting to start"
    background.cancel_screen(queued)
    assert background.read_screen(queued).state == "cancelled"

    (screens / "broken").mkdir()
    (screens / "broken" / runs.CONFIG).write_text("{not json")
    (screens / "a-run").mkdir()
    runs.write_json_atomic(screens / "a-run" / runs.CONFIG, {"train": {"arch": "squeezenet1_0"}})  # a run folder, not a job
    (screens / "empty").mkdir()
    (screens / "notes.txt").write_text("hello")
    listed = background.list_screens(screens)
    assert [summary.name for summary in listed] == [queued.name, "broken"]
    broken = listed[1]
    assert broken.state == background.UNREADABLE and "not valid JSON" in broken.problem
    assert background.screen_progress_line(broken).startswith("cannot be read: ")
    assert "not a screening job" in background.read_screen(screens / "a-run").problem
    with pytest.raises(runs.RunError, match="cannot be read"):
        background.cancel_screen(screens / "broken")
    assert background.list_screens(tmp_path / "nowhere") == []


def test_progress_lines_say_where_a_job_stands_in_plain_words(tmp_path):
    job = background.ScreenSummary(tmp_path, "job", "running", done=412, total=1250, seconds_left=125.0, images_per_second=6.6)
    assert background.screen_progress_line(job) == "412 of 1,250 files, about 2 min 05 s left"
    assert background.screen_progress_line(background.ScreenSummary(tmp_path, "job", "running", done=0, total=1250)).startswith(
        "0 of 1,250 files; the time left is known"
    )
    assert background.screen_progress_line(background.ScreenSummary(tmp_path, "job", "running", message="listing files")) == "listing files…"
    interrupted = background.ScreenSummary(tmp_path, "job", runs.INTERRUPTED, done=64, total=100)
    assert background.screen_progress_line(interrupted) == "stopped after 64 of 100 files (its process ended without finishing); resume scores the rest"
    failed = background.ScreenSummary(tmp_path, "job", "failed", done=8, total=100, message="the model of x changed")
    assert background.screen_progress_line(failed) == "failed after 8 of 100 files: the model of x changed"


# --- SLURM ---------------------------------------------------------------------------------------


def test_the_slurm_dry_run_prints_the_array_script_and_creates_nothing(tmp_path, capsys):
    folder = make_class_folder(tmp_path / "photos", {"a": 2})
    command = [sys.executable, "-m", "wildvision", "screen", str(folder), "--screens-dir", str(tmp_path / "screens"), "--name", "may"]
    cluster = ["--slurm-tasks", "4", "--partition", "gpu", "--time", "2:00:00", "--gpus-per-task", "1", "--mem", "16G", "--sbatch", "qos=short"]
    result = subprocess.run([*command, *cluster, "--device", "cuda", "--dry-run"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for line in (
        "#SBATCH --job-name=wildvision-screen",
        "#SBATCH --array=0-3",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=2:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --mem=16G",
        "#SBATCH --qos=short",
        'screen_dir=$(cd "$SLURM_SUBMIT_DIR/../.." && pwd)',
    ):
        assert line in lines
    python = os.path.abspath(sys.executable)
    task = f'exec {python} -m wildvision screen --resume "$screen_dir" --shard "$SLURM_ARRAY_TASK_ID/4" --device cuda >> "$screen_dir/console.log" 2>&1'
    assert task in lines
    settings = slurm.SlurmSettings(partition="gpu", time_limit="2:00:00", gpus_per_task=1, memory="16G", extra=("--qos=short",), job_name="wildvision-screen")
    assert result.stdout == background.screen_script(4, settings, "cuda"), "exactly the script submit_screen submits"
    assert f"{tmp_path / 'screens'}/may-TIME-xxxx" in result.stderr and "nothing was created or submitted" in result.stderr
    assert not (tmp_path / "screens").exists()

    for extra, problem in (
        (["--dry-run"], "--dry-run with --slurm-tasks"),
        (["--shard", "0/2"], "--shard goes with --resume"),
        (["--slurm-tasks", "0", "--dry-run"], "give 1 or more tasks"),
        (["--slurm-tasks", "2", "--partition", "gpu; rm -rf ~", "--dry-run"], "partition"),
    ):
        assert cli.main([*command[3:], *extra]) == 2
        assert problem in capsys.readouterr().err, extra
    assert not (tmp_path / "screens").exists()
    with pytest.raises(ValueError, match="write I/N"):
        parse_shard("2/2")


def test_shards_scored_one_by_one_make_the_same_scores_as_one_process(shared, tmp_path, capsys):
    folder = demo_subset(tmp_path, {"captive": 10, "wild": 10})
    (folder / "repost.jpg").write_bytes(min((folder / "wild").iterdir()).read_bytes())  # its twin is in another shard's part
    loaded = load_model("default")
    whole = finish_screen(create_screen([str(folder)], "default", loaded, 8, tmp_path / "one", part_batches=1), loaded)

    sharded = create_screen([str(folder)], "default", loaded, 8, tmp_path / "shards", part_batches=1)  # 21 files: 3 parts
    resume_screen(sharded, shard=(1, 2))
    assert sorted(p.name for p in (sharded / PARTS).glob("part-*")) == ["part-000000008.csv"], "shard 1 of 2 scores part 1 only"
    status = runs.read_json(sharded / runs.STATUS)
    assert status["state"] == "running" and status["done"] == 8 and status["total"] == 21
    assert not (sharded / SCORES).exists()
    assert cli.main(["screen", "--resume", str(sharded), "--shard", "0/2"]) == 0  # parts 0 and 2, then the merge
    assert "21 files" in capsys.readouterr().out

    assert (sharded / SCORES).read_bytes() == (whole / SCORES).read_bytes()
    assert (sharded / "features.npy").read_bytes() == (whole / "features.npy").read_bytes(), "the photos' stored features too"
    rows = read_scores(sharded)
    assert rows[0]["path"].endswith("repost.jpg") and rows[0]["duplicate_group"] == rows[11]["duplicate_group"] == "1"  # folders list their files first
    assert background.read_screen(sharded).state == "completed" and not (sharded / PARTS).exists()
    assert cli.main(["screen", "--resume", str(sharded), "--shard", "1/2"]) == 0, "a late shard finds the job completed"


def test_a_submitted_job_records_its_array_and_reads_its_state_from_slurm(shared, tmp_path, monkeypatch):
    """sbatch, squeue and sacct stand-ins: the submission and the join of folder and task states, without a cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, script in {
        "sbatch": "#!/bin/sh\necho 4242\n",
        "squeue": "#!/bin/sh\nprintf '4242_0|RUNNING|None\\n4242_1|PENDING|Resources\\n'\n",
        "sacct": "#!/bin/sh\nexit 1\n",
        "scancel": '#!/bin/sh\necho "$@" > "$(dirname "$0")/scancelled"\n',
    }.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = demo_subset(tmp_path, {"captive": 3})
    screen_dir = background.submit_screen([str(folder)], "default", tmp_path / "screens", 2, slurm.SlurmSettings(job_name=background.JOB_NAME))

    task = slurm.read_task(screen_dir)
    assert task["job_id"] == "4242" and task["tasks"] == 2
    submission = Path(task["submission"])
    assert submission.parent == screen_dir / "slurm" and (submission / slurm.SCRIPT).read_text() == background.screen_script(
        2, slurm.SlurmSettings(job_name=background.JOB_NAME)
    )
    assert runs.read_json(screen_dir / runs.CONFIG)["files"] == 3 and (screen_dir / FILES).exists()
    summary = background.read_screen(screen_dir)
    assert summary.state == "queued" and summary.slurm == "SLURM job 4242: 1 RUNNING, 1 PENDING"
    with pytest.raises(runs.RunError, match="queued; only interrupted"):
        background.resume_screen_in_background(screen_dir)
    background.cancel_screen(screen_dir)
    assert (bin_dir / "scancelled").read_text().strip() == "4242"
    assert background.read_screen(screen_dir).status["message"] == "SLURM job 4242 cancelled before it started"

    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")  # every task gone: the folder's running is stale
    runs.write_status(screen_dir, "running", done=0, total=3)
    assert background.read_screen(screen_dir).state == runs.INTERRUPTED
