"""The bounded queue for background work (wildvision.job_queue): at most settings.max_background_jobs processes work at
once, the rest wait in the order they were started and say where they stand; a person's jobs are capped; a waiting
job can be cancelled. Real detached processes throughout: tiny screening jobs with the shipped model where work must
be done, and a real queued process (a sleeping `python -m timeit`) holding the only slot where only waiting matters."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from conftest import demo_subset, make_class_folder, slow_squeezenet_config, team_settings
from conftest import wait_until as poll
from wildvision import job_queue, jobs, runs
from wildvision.explain import gallery_jobs
from wildvision.screening import background
from wildvision.training import launch


@pytest.fixture
def queue(tmp_path, monkeypatch) -> Path:
    """A queue folder of this test's own, one background slot, two jobs per person."""
    folder = tmp_path / "queue"
    monkeypatch.setenv(job_queue.QUEUE_DIR_ENV, str(folder))
    team_settings(monkeypatch, tmp_path, "[limits]\nbackground_jobs = 1\njobs_per_person = 2\n")
    return folder


@pytest.fixture
def slot_taken(queue, tmp_path):
    """The only slot held by a real queued process that sleeps (so every job started after it waits); stopped after."""
    pid = job_queue.start("timeit", ["-n", "1", "-r", "1", "import time; time.sleep(120)"], tmp_path / "sleeper.log")
    poll(lambda: [record["pid"] for record in job_queue.working(queue)], lambda pids: pids == [pid], timeout_s=20, interval_s=0.05)
    yield pid
    jobs.stop(pid)


def test_n_plus_2_screening_jobs_run_at_most_n_at_once_in_the_order_started(shared, queue, tmp_path):
    folder = demo_subset(tmp_path, {"captive": 2, "wild": 1})
    screens = tmp_path / "screens"
    started = time.monotonic()
    dirs = [background.launch_screen([str(folder)], "default", screens, name=f"job{i}", owner=f"person{i}") for i in range(3)]
    pids = [background.read_screen(d).status["pid"] for d in dirs]

    # the first takes the slot; the other two wait, and their lines say where they stand
    poll(lambda: job_queue.place(pids[0], queue), lambda place: place is None, timeout_s=20, interval_s=0.05)
    lines = [background.screen_progress_line(background.read_screen(d)) for d in dirs[1:]]
    assert lines == ["waiting: 1st in line; at most 1 background job runs at once", "waiting: 2nd in line; at most 1 background job runs at once"]

    most, order = 0, []
    while True:
        summaries = [background.read_screen(d) for d in dirs]
        most = max(most, sum(s.state == "running" for s in summaries), len(job_queue.working(queue)))
        order += [s.name for s in summaries if s.state != "queued" and s.name not in order]
        if all(s.state not in ("queued", "running") for s in summaries):
            break
        assert time.monotonic() - started < 300, summaries
        time.sleep(0.1)
    assert most == 1, "never more than one job worked at once"
    assert [s.state for s in summaries] == ["completed"] * 3, [(s.state, s.message) for s in summaries]
    assert order == [d.name for d in dirs], "first come, first served"
    assert [s.owner for s in summaries] == ["person0", "person1", "person2"]
    finished = [runs.read_json(d / runs.STATUS) for d in dirs]
    for earlier, later in itertools.pairwise(finished):
        assert earlier["finished_at"] <= later["started_at"], "each began after the one before it ended"
    assert "for its turn (at most 1 background job runs at once)" in (dirs[2] / jobs.CONSOLE).read_text()


def test_a_person_at_the_cap_is_refused_and_a_waiting_job_can_be_cancelled(queue, slot_taken, tmp_path):
    folder = make_class_folder(tmp_path / "photos", {"a": 2})
    screens = tmp_path / "screens"
    first, second = (background.launch_screen([str(folder)], "default", screens, name=name, owner="ana@ngo.org") for name in ("first", "second"))
    assert background.read_screen(second).owner == "ana@ngo.org"
    assert background.screen_progress_line(background.read_screen(second)) == "waiting: 2nd in line; at most 1 background job runs at once"
    with pytest.raises(jobs.TooManyJobs, match=r"^You already have 2 jobs waiting or running \(the most one person may\); wait for one"):
        background.launch_screen([str(folder)], "default", screens, name="third", owner="ana@ngo.org")
    assert sorted(p.name.split("-")[0] for p in screens.iterdir()) == ["first", "second"], "a refused job makes no folder"
    background.launch_screen([str(folder)], "default", screens, name="ben", owner="ben@ngo.org")  # another person may
    background.launch_screen([str(folder)], "default", screens, name="cli")  # no owner (the command line): not capped

    pid = background.read_screen(first).status["pid"]
    background.cancel_screen(first)
    cancelled = poll(lambda: background.read_screen(first), lambda s: not jobs.process_alive(pid), timeout_s=10, interval_s=0.05)
    assert cancelled.state == "cancelled" and job_queue.place(pid, queue) is None
    assert background.screen_progress_line(background.read_screen(second)) == "waiting: 1st in line; at most 1 background job runs at once"
    job_queue.check_room("ana@ngo.org")  # one waiting job now: room for another
    for summary in background.list_screens(screens):  # before the slot is freed: none of them is to work
        if summary.state == "queued":
            background.cancel_screen(summary.path)


def test_a_waiting_training_run_and_gallery_say_their_place_and_owner(shared, queue, slot_taken, tmp_path):
    data = make_class_folder(tmp_path / "data", {"captive": 4, "wild": 4})
    run_dir = launch.launch_run(slow_squeezenet_config(data, 1), tmp_path / "runs", owner="ana@ngo.org")
    run = launch.read_state(run_dir)
    assert run.owner == "ana@ngo.org" and run.state == "queued"
    assert launch.progress_line(run) == "queued: waiting: 1st in line; at most 1 background job runs at once (at most 1 epoch)"

    test_dir = make_class_folder(tmp_path / "test", {"captive": 2, "other": 2})
    folder = gallery_jobs.start_gallery("default", "market", test_dir, runs_dir=tmp_path / "runs", owner="ben@ngo.org")
    (item,) = gallery_jobs.stored_galleries("default", tmp_path / "runs")
    assert (item.state, item.owner, item.folder) == (gallery_jobs.BEING_MADE, "ben@ngo.org", folder)
    assert gallery_jobs.progress_text(item) == "waiting: 2nd in line; at most 1 background job runs at once"

    pid = run.status["pid"]
    launch.cancel_run(run_dir)
    poll(lambda: jobs.process_alive(pid), lambda alive: not alive, timeout_s=10, interval_s=0.05)
    assert launch.read_state(run_dir).state == "cancelled", "a run cancelled while it waited never trains"
    assert gallery_jobs.progress_text(gallery_jobs.stored_galleries("default", tmp_path / "runs")[0]).startswith("waiting: 1st in line")
    jobs.stop(runs.read_json(folder / "job.json")["pid"])


def test_an_export_waits_its_turn_and_counts_as_its_owners_job(screened_job, queue, slot_taken, tmp_path):
    from conftest import copy_job
    from wildvision.screening import export_requests

    job = copy_job(screened_job, tmp_path / "screens")
    pack = export_requests.new_pack_path(job)
    export_requests.start_export(job, "evidence pack", pack, ["--zip", pack], owner="ana@ngo.org")
    (request,) = export_requests.export_requests(job)
    assert (request.state, request.detail) == ("running", "waiting: 1st in line; at most 1 background job runs at once")
    assert job_queue.jobs_of("ana@ngo.org") == 1
    export_requests.start_export(job, "evidence pack", pack.with_name("second.zip"), ["--zip", pack.with_name("second.zip")], owner="ana@ngo.org")
    with pytest.raises(jobs.TooManyJobs):
        export_requests.start_export(job, "evidence pack", pack.with_name("third.zip"), ["--zip", pack.with_name("third.zip")], owner="ana@ngo.org")
    for ticket in job_queue.waiting(queue):
        jobs.stop(ticket["pid"])
