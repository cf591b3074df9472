"""Exports started from the Review page: each request keeps its own log, so each reports its own error."""

from __future__ import annotations

from conftest import copy_job, wait_until
from wildvision.screening import export_requests


def test_two_exports_failing_at_once_each_report_their_own_error(screened_job, tmp_path):
    job = copy_job(screened_job, tmp_path / "screens")  # completed, and nobody has decided anything yet
    pack, folder = tmp_path / "pack.zip", tmp_path / "training"
    export_requests.start_export(job, "evidence pack", pack, ["--zip", pack])
    export_requests.start_export(job, "training folder", folder, ["--training-folder", folder])

    ended = wait_until(lambda: export_requests.export_requests(job), lambda found: all(r.state != "running" for r in found), timeout_s=180)
    by_kind = {request.kind: request for request in ended}
    assert [request.state for request in ended] == ["failed", "failed"], ended
    assert "no confirmed cases" in by_kind["evidence pack"].detail, by_kind["evidence pack"]
    assert "has been decided" in by_kind["training folder"].detail and "no confirmed cases" not in by_kind["training folder"].detail, by_kind["training folder"]
