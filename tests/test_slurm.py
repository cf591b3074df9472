"""The SLURM launcher against a real Slurm: a single-node cluster started on this machine by a fixture.

The fixture runs Debian's slurmctld, slurmd and slurmdbd (with MariaDB, so that `sacct` works) and
munged, all as root, on free localhost ports, from a slurm.conf it writes, and stops them afterwards.
`.ci/run` installs them (slurm-wlm, slurmdbd, munge, mariadb-server). Without them the cluster tests
skip and say why; WILDVISION_REQUIRE_SHARED=1 (set by CI) turns that into a failure.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conftest import SHARED, SQUEEZENET_WEIGHTS, demo_subset, slow_squeezenet_config
from wildvision import runs, slurm
from wildvision.training.launch import cancel_run, launch_grid, read_state

DAEMONS = ("sbatch", "squeue", "sacct", "scancel", "slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "mariadb")
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2-imagenet-bnfolded.pth"
GRID3 = """
[[run]]
arch = "squeezenet1_0"
regime = "transfer"
background = false

[[run]]
arch = "squeezenet1_0"
regime = "transfer"
background = true

[[run]]
arch = "mobilenet_v2"
regime = "transfer"
background = true
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout_s: float = 60, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise AssertionError(f"{what} did not come up within {timeout_s} s\n{tail}")


def _ok(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node Slurm cluster with accounting; SLURM_CONF points every Slurm command at it."""
    missing = [tool for tool in DAEMONS if not shutil.which(tool)]
    if missing or os.geteuid() != 0:
        message = (
            f"needs Slurm, MUNGE and MariaDB ({', '.join(missing)} missing; apt-get install slurm-wlm slurmdbd munge mariadb-server)"
            if missing
            else "starts the Slurm daemons as root"
        )
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; CI installs them and runs as root")
        pytest.skip(message)
    base = tmp_path_factory.mktemp("slurm")
    for folder in ("munge", "db", "state", "spool"):
        (base / folder).mkdir(mode=0o700)
    host = socket.gethostname().split(".")[0]
    db_port, dbd_port, ctld_port, slurmd_port = (_free_port() for _ in range(4))
    (base / "munge" / "munge.key").write_bytes(os.urandom(1024))
    (base / "munge" / "munge.key").chmod(0o400)
    munge_socket = base / "munge" / "munge.socket"
    (base / "slurmdbd.conf").write_text(
        "\n".join(
            [
                "AuthType=auth/munge",
                f"AuthInfo=socket={munge_socket}",
                f"DbdHost={host}",
                "DbdAddr=127.0.0.1",
                f"DbdPort={dbd_port}",
                "SlurmUser=root",
                f"PidFile={base}/slurmdbd.pid",
                f"LogFile={base}/slurmdbd.log",
                "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1",
                f"StoragePort={db_port}",
                "StorageUser=slurm",
                "StoragePass=wildvision",
                "StorageLoc=slurm_acct_db",
                "",
            ]
        )
    )
    (base / "slurmdbd.conf").chmod(0o600)  # slurmdbd refuses a config file that others can read
    (base / "slurm.conf").write_text(
        "\n".join(
            [
                "ClusterName=wildvision-test",
                f"SlurmctldHost={host}(127.0.0.1)",
                f"SlurmctldPort={ctld_port}",
                f"SlurmdPort={slurmd_port}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                f"StateSaveLocation={base}/state",
                f"SlurmdSpoolDir={base}/spool",
                f"SlurmctldPidFile={base}/slurmctld.pid",
                f"SlurmdPidFile={base}/slurmd.pid",
                f"SlurmctldLogFile={base}/slurmctld.log",
                f"SlurmdLogFile={base}/slurmd.log",
                # no cgroups in a container: track job processes by their parents, bind nothing
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "MpiDefault=none",
                "MailProg=/bin/true",
                "KillWait=5",
                "AccountingStorageType=accounting_storage/slurmdbd",
                "AccountingStorageHost=127.0.0.1",
                f"AccountingStoragePort={dbd_port}",
                f"AccountingStoragePass={munge_socket}",  # the MUNGE socket for talking to slurmdbd
                f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    previous_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(base / "slurm.conf")  # Slurm commands here, in the CLI's processes and in the jobs
    daemons: list[subprocess.Popen] = []

    def start(*command: str, log: str) -> None:
        daemons.append(subprocess.Popen(command, stdout=open(base / log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    try:
        start(
            "munged",
            "--foreground",
            "--force",
            f"--key-file={base}/munge/munge.key",
            f"--socket={munge_socket}",
            f"--pid-file={base}/munge/munged.pid",
            f"--seed-file={base}/munge/seed",
            log="munged.log",
        )
        _wait("munged", munge_socket.exists, log=base / "munged.log")
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={base}/db", "--skip-test-db"], check=True, capture_output=True)
        db_socket = base / "mysql.sock"
        start(
            "mariadbd",
            "--no-defaults",
            "--user=root",
            f"--datadir={base}/db",
            f"--socket={db_socket}",
            f"--port={db_port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={base}/mysql.pid",
            "--innodb-buffer-pool-size=64M",
            log="mariadb.log",
        )
        sql = "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'wildvision'; GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';"
        _wait("mariadbd", lambda: _ok("mariadb", "--no-defaults", f"--socket={db_socket}", "-u", "root", "-e", "SELECT 1"), log=base / "mariadb.log")
        subprocess.run(["mariadb", "--no-defaults", f"--socket={db_socket}", "-u", "root", "-e", sql], check=True)
        start("slurmdbd", "-D", log="slurmdbd.out")  # reads slurmdbd.conf beside $SLURM_CONF
        _wait("slurmdbd", lambda: _ok("sacctmgr", "--noheader", "list", "cluster"), log=base / "slurmdbd.log")
        start("slurmctld", "-D", "-i", log="slurmctld.out")
        start("slurmd", "-D", "-N", host, log="slurmd.out")
        _wait(
            "the node",
            lambda: subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True).stdout.strip() == "idle",
            log=base / "slurmctld.log",
        )
        yield base
    finally:
        for daemon in reversed(daemons):  # slurmd, slurmctld, slurmdbd, mariadbd, munged
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if previous_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous_conf


def sacct(job_id: str) -> str:
    return subprocess.run(
        ["sacct", "--allocations", f"--jobs={job_id}", "--format=JobID,JobName,Partition,State,ExitCode,Elapsed,NodeList"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def wait_for(predicate, timeout_s: float, what: str, job_id: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}; Slurm says {slurm.task_states([job_id])}\n{sacct(job_id)}")


def all_ended(job_id: str, tasks: int) -> bool:
    """Every task has left the queue and sacct has its record (slurmctld sends it to slurmdbd a moment later)."""
    states = slurm.task_states([job_id])
    return len(states) == tasks and all(state not in slurm.LIVE for state, _ in states.values())


def train_page() -> AppTest:
    return AppTest.from_file("../app_pages/train.py", default_timeout=60).run()


def test_the_paper_grid_dry_run_prints_a_24_task_array_and_creates_nothing(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wildvision",
            "grid",  # no grid file: the paper's, shipped in the package
            "--data",
            str(tmp_path / "data"),
            "--runs-dir",
            str(tmp_path / "runs"),
            "--launcher",
            "slurm",
            "--dry-run",
            "--partition",
            "gpu",
            "--account",
            "wildlife",
            "--time",
            "1-00:00:00",
            "--gpus-per-task",
            "1",
            "--cpus-per-task",
            "8",
            "--mem",
            "32G",
            "--sbatch",
            "qos=short",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for line in (
        "#SBATCH --array=0-23",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=wildlife",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH --qos=short",
    ):
        assert line in result.stdout.splitlines()
    assert f'exec {os.path.abspath(sys.executable)} -m wildvision.worker "$run_dir" >> "$run_dir/console.log" 2>&1' in result.stdout.splitlines()
    assert "# task 23: vgg19_bn-combi-bg" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_settings_that_would_break_out_of_the_batch_script_are_refused():
    with pytest.raises(ValueError, match="partition"):
        slurm.SlurmSettings(partition="gpu\nrm -rf ~")
    with pytest.raises(ValueError, match="one sbatch option per line"):
        slurm.SlurmSettings(extra=("--qos=short\nrm -rf ~",))
    assert slurm.extra_options(["#SBATCH --qos=short", "", "constraint=a100", "-C a100"]) == ("--qos=short", "--constraint=a100", "-C a100")


def test_train_page_shows_the_batch_script_without_submitting(runs_dir):
    at = train_page()
    assert not at.exception
    at.radio(key="grid_backend").set_value("A SLURM cluster")
    at.text_input(key="slurm_partition").set_value("gpu")
    at.text_input(key="slurm_time").set_value("12:00:00")
    at.text_area(key="slurm_extra").set_value("#SBATCH --qos=short")
    next(b for b in at.button if b.label == "Show the SLURM batch script").click().run()
    assert not at.exception and not at.error
    script = at.code[0].value
    assert "#SBATCH --array=0-23" in script and "#SBATCH --partition=gpu" in script and "#SBATCH --qos=short" in script
    assert any("Nothing was submitted" in caption.value for caption in at.caption)
    assert runs.list_runs(runs_dir) == []

    at.text_input(key="slurm_partition").set_value("gpu; rm -rf ~")
    next(b for b in at.button if b.label == "Start the grid").click().run()
    assert "partition" in at.error[0].value
    assert runs.list_runs(runs_dir) == []


def test_a_three_task_grid_from_the_cli_runs_on_slurm_and_the_page_shows_it(cluster, shared, tmp_path, runs_dir):
    data = demo_subset(tmp_path, {"captive": 20, "wild": 20, "background": 6})
    test = demo_subset(tmp_path, {"captive": 8, "other": 8}, source="test_out_pet")
    (tmp_path / "grid.toml").write_text(GRID3)
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wildvision",
            "grid",
            str(tmp_path / "grid.toml"),
            "--data",
            str(data),
            "--test",
            f"test_out_pet={test}",
            "--weights",
            f"squeezenet1_0={SQUEEZENET_WEIGHTS}",
            "--weights",
            f"mobilenet_v2={MOBILENET_WEIGHTS}",
            "--lr",
            "0.0001",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--workers",
            "0",
            "--feature-views",
            "1",
            "--device",
            "cpu",
            "--runs-dir",
            str(runs_dir),
            "--launcher",
            "slurm",
            "--cpus-per-task",
            "1",
            "--time",
            "10:00",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --array=0-2" in result.stdout
    run_dirs = [Path(line.removeprefix("run folder: ")) for line in result.stdout.splitlines() if line.startswith("run folder: ")]
    assert len(run_dirs) == 3
    tasks = [slurm.read_task(d) for d in run_dirs]
    job_id = tasks[0]["job_id"]
    assert [t["task_id"] for t in tasks] == [f"{job_id}_{i}" for i in range(3)]

    wait_for(lambda: all_ended(job_id, 3), 240, "all tasks to finish", job_id)
    print(f"3-task array done {time.monotonic() - started:.0f} s after submission\n{sacct(job_id)}")
    assert {state for state, _ in slurm.task_states([job_id]).values()} == {"COMPLETED"}

    submission = Path(tasks[0]["submission"])
    assert (submission / slurm.SCRIPT).read_text() in result.stdout
    assert (submission / slurm.RUN_LIST).read_text().split() == [str(d) for d in run_dirs]
    assert sorted(p.name for p in submission.glob("slurm-*.out")) == [f"slurm-{job_id}_{i}.out" for i in range(3)]
    for run_dir, arch in zip(run_dirs, ["squeezenet1_0", "squeezenet1_0", "mobilenet_v2"]):
        run = runs.read_run(run_dir)
        assert run.state == "completed", run.status
        assert run.config["train"]["arch"] == arch
        results = runs.read_json(run_dir / runs.RESULTS)
        assert set(results["test_sets"]) == {"test_in", "test_out_pet"}
        assert results["test_sets"]["test_out_pet"]["n_images"] == 16
        assert (run_dir / runs.CHECKPOINT).is_file() and not (run_dir / runs.LAST).exists()
        assert "best epoch 1 of 1" in (run_dir / "console.log").read_text()

    at = train_page()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["state"].tolist() == ["completed"] * 3
    assert sorted(table["SLURM"]) == [f"SLURM task {job_id}_{i}: COMPLETED" for i in range(3)]
    listed = subprocess.run([sys.executable, "-m", "wildvision", "runs", "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=60)
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 3 and all(" completed " in row for row in rows)
    assert sorted(row.split("  ")[-1] for row in rows) == [f"SLURM task {job_id}_{i}: COMPLETED" for i in range(3)]


def test_cancelling_on_the_train_page_cancels_the_slurm_tasks(cluster, shared, tmp_path, runs_dir):
    data = demo_subset(tmp_path, {"captive": 20, "wild": 20})
    config = slow_squeezenet_config(data, epochs=200, patience=200)
    # Each task asks for every CPU of the node, so the second waits (PENDING) while the first runs.
    running, pending = launch_grid([config, config], runs_dir, slurm.SlurmSettings(cpus_per_task=os.cpu_count(), job_name="cancel-test"))
    job_id = slurm.read_task(running)["job_id"]
    wait_for(lambda: read_state(running).state == "running" and runs.read_metrics(running), 120, "the first task's first epoch", job_id)

    at = train_page()
    labels = [expander.label for expander in at.expander if "SLURM task" in expander.label]
    assert any(label.startswith(f"{pending.name}: **queued** · SLURM task {job_id}_1: PENDING") for label in labels), labels
    assert f"{running.name}: **running** · SLURM task {job_id}_0: RUNNING" in labels

    at.button(key=f"Cancel_{pending.name}").click().run()
    at.button(key=f"Cancel_{running.name}").click().run()
    assert not at.exception and not at.error
    wait_for(lambda: all_ended(job_id, 2), 60, "both tasks to end", job_id)
    print(sacct(job_id))
    assert runs.read_run(running).status["message"].startswith("cancelled by the user")
    assert "cancelled before it started" in runs.read_run(pending).status["message"]

    at = train_page()
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[running.name, "state"] == "cancelled" and table.loc[pending.name, "state"] == "cancelled"
    assert table.loc[running.name, "SLURM"] == f"SLURM task {job_id}_0: CANCELLED"
    assert table.loc[pending.name, "SLURM"] == f"SLURM task {job_id}_1: CANCELLED"

    # Resume resubmits the run as it was submitted, as a new one-task array, and it carries on after its last epoch.
    epochs_done = len(runs.read_metrics(running))
    at.selectbox(key="finished_run").set_value(running.name).run()
    at.button(key=f"Resume_{running.name}").click().run()
    assert not at.exception and not at.error
    task = slurm.read_task(running)
    assert task["job_id"] != job_id and task["task_id"] == f"{task['job_id']}_0"
    assert "#SBATCH --cpus-per-task=" in (Path(task["submission"]) / slurm.SCRIPT).read_text()
    wait_for(lambda: len(runs.read_metrics(running)) > epochs_done, 120, "the resubmitted run's next epoch", task["job_id"])
    cancel_run(running)
    wait_for(lambda: all_ended(task["job_id"], 1), 60, "the resubmitted task to end", task["job_id"])
    assert read_state(running).state == "cancelled"


def test_a_screening_job_runs_as_a_job_array_whose_last_task_merges_the_scores(cluster, shared, tmp_path):
    from wildvision.screening import background
    from wildvision.screening.config import PARTS, SCORES
    from wildvision.screening.sources import read_file_list

    folder = demo_subset(tmp_path, {"captive": 12, "wild": 12})
    settings = slurm.SlurmSettings(cpus_per_task=1, time_limit="10:00", job_name=background.JOB_NAME)
    screen_dir = background.submit_screen([str(folder)], "default", tmp_path / "screens", 2, settings, part_batches=1)  # 3 parts of 8
    job_id = slurm.read_task(screen_dir)["job_id"]
    wait_for(lambda: all_ended(job_id, 2), 240, "both shards to finish", job_id)
    print(sacct(job_id))
    assert {state for state, _ in slurm.task_states([job_id]).values()} == {"COMPLETED"}
    summary = background.read_screen(screen_dir)
    assert summary.state == "completed" and summary.slurm == f"SLURM job {job_id}, 2 tasks", summary
    rows = list(csv.DictReader(open(screen_dir / SCORES, newline="")))
    assert [row["path"] for row in rows] == [row.path for row in read_file_list(screen_dir)] and len(rows) == 24
    assert all(row["probability"] for row in rows) and not (screen_dir / PARTS).exists()
    submission = Path(slurm.read_task(screen_dir)["submission"])
    assert sorted(p.name for p in submission.glob("slurm-*.out")) == [f"slurm-{job_id}_{i}.out" for i in range(2)]
    log = (screen_dir / "console.log").read_text()
    assert log.count("screened 24 files: ") + log.count("its parts are scored") == 2, log  # each task's last line: it merged, or left it to the other
