"""A screening job's life: created, listed, scored, merged; killed at any moment, resumed with each file scored once.

The folder it lives in is described in wildvision/screening/__init__.py. SIGTERM (cancel, scancel, a SLURM time limit)
ends the part under way unwritten and records 'cancelled'; any other failure is recorded as 'failed' with its message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from wildvision import jobs, model_card, runs
from wildvision.datacheck import PHASH_THRESHOLD
from wildvision.inference import default_batch_size
from wildvision.predict import LoadedModel, checkpoint_path, load_model
from wildvision.screening.config import FILES, PART_BATCHES, ScreenConfig, default_screens_dir, read_config, write_config
from wildvision.screening.merge import merge_when_complete
from wildvision.screening.scoring import Shard, score_parts
from wildvision.screening.sources import check_sources, listing_note, write_file_list

CANCELLED_MESSAGE = "cancelled by the user: the images scored so far are kept, and resuming the job scores the rest"


def model_version(loaded: LoadedModel) -> dict:
    """What identifies the weights: the checkpoint's path and modification time, or the default model card's code_version."""
    if loaded.source == "default model":
        return {"default_model_code_version": model_card.load_card()["code_version"]}
    path = Path(loaded.source).resolve()
    return {"checkpoint": str(path), "checkpoint_mtime_ns": path.stat().st_mtime_ns}


def _model_fields(loaded: LoadedModel, batch_size: int, part_batches: int) -> dict:
    """config.json's record of the model, and the part size it fixes for good."""
    version = model_version(loaded)
    return {
        "model_file": version.get("checkpoint", model_card.DEFAULT_NAME),
        "model_version": version,
        "architecture": loaded.arch,
        "threshold": loaded.threshold,
        "class_names": tuple(loaded.class_names),
        "batch_size": batch_size,
        "part_size": batch_size * part_batches,
    }


def model_file(model: str, runs_dir: Path | None = None) -> str:
    """The model as config.json keeps it: default, or its checkpoint's absolute path (a CheckpointError says why there is none)."""
    if model == model_card.DEFAULT_NAME:
        return model
    return str(checkpoint_path(model, runs_dir or runs.default_runs_dir()).resolve())


def new_screen(
    sources: list[str],
    model: str,
    screens_dir: Path,
    name: str | None = None,
    loaded: LoadedModel | None = None,
    batch_size: int | None = None,
    part_batches: int = PART_BATCHES,
    device: str | None = None,
    read_roots: tuple[str, ...] | None = None,
) -> Path:
    """A new job folder holding config.json, whose file list is not made yet (files: null), and status queued.

    With `loaded` (and `batch_size`), config.json records the model at once; without, only the checkpoint is found
    (quick) and the first process that scores the job loads the model and records it (load_screen_model), so the
    dashboard never waits for a model to load. `part_batches`: batches per part file (tests make it small);
    `device`: what a SLURM job's tasks score on; `read_roots`: a page's data roots (roots.read_roots), which the files
    found in the sources must not lead out of (None: the command line's job, not limited)."""
    check_sources(sources)
    file = model_file(model) if loaded is None else None
    screen_dir = runs.create_run_dir(screens_dir, name or Path(sources[0]).stem or "screen")
    config = ScreenConfig(
        model=model,
        model_file=file,
        sources=tuple(str(Path(s).resolve()) for s in sources),
        sources_as_given=tuple(sources),
        created_at=runs.now(),
        part_batches=part_batches,
        phash_threshold=PHASH_THRESHOLD,
        device=device,
        read_roots=read_roots,
    )
    if loaded is not None:
        config = dataclasses.replace(config, **_model_fields(loaded, batch_size or default_batch_size(loaded.device), part_batches))
    write_config(screen_dir, config)
    runs.write_status(screen_dir, "queued", message="waiting to start", done=0, total=None)
    return screen_dir


def list_files(screen_dir: Path, config: ScreenConfig | None = None) -> ScreenConfig:
    """Write the job's file list (files.jsonl), record its length and the system files left out in config.json, and
    say both in the job's log; returns the config as recorded. `config`: the job's, when the caller has read it."""
    config = config or read_config(screen_dir)
    left_out: list[str] = []
    files = write_file_list(screen_dir, list(config.sources_as_given), left_out, config.read_roots)
    config = dataclasses.replace(config, files=files, system_files_left_out=len(left_out))
    write_config(screen_dir, config)
    print(listing_note(files, left_out), file=sys.stderr, flush=True)
    return config


def create_screen(
    sources: list[str], model: str, loaded: LoadedModel, batch_size: int, screens_dir: Path, name: str | None = None, part_batches: int = PART_BATCHES
) -> Path:
    """A new job folder with config.json and the file list; scoring is left to `finish_screen`.

    `part_batches`: batches per part file (tests make it small to kill a job between parts)."""
    screen_dir = new_screen(sources, model, screens_dir, name, loaded, batch_size, part_batches)
    runs.write_status(screen_dir, "queued", message="listing files", pid=os.getpid(), host=socket.gethostname())
    list_files(screen_dir)
    return screen_dir


def load_screen_model(screen_dir: Path, device: str = "cpu") -> LoadedModel:
    """The job's model; a job whose model is not recorded yet (new_screen without one) records it now, with the part
    size it fixes; a job whose model's weights changed since it began is refused (its rows would mix two models)."""
    config = read_config(screen_dir)
    loaded = load_model(str(config.model_file), device=device)
    if config.model_version is None:
        write_config(screen_dir, dataclasses.replace(config, **_model_fields(loaded, default_batch_size(loaded.device), config.part_batches)))
    elif model_version(loaded) != config.model_version:
        raise runs.RunError(f"the model of {screen_dir} changed since the job began ({config.model_version}); start a new screening job")
    return loaded


@contextlib.contextmanager
def _recorded(screen_dir: Path) -> Iterator[None]:
    """Inside the block SIGTERM (cancel, scancel, a SLURM time limit) is recorded as 'cancelled', any other failure
    as 'failed' with its message; both are raised again. Parts written so far stay: a resume scores only the rest."""
    try:
        with jobs.sigterm_cancels():
            yield
    except jobs.Cancelled:
        runs.write_status(screen_dir, "cancelled", message=CANCELLED_MESSAGE)
        raise
    except Exception as error:
        runs.write_status(screen_dir, "failed", message=str(error))
        raise


def _finish(screen_dir: Path, loaded: LoadedModel, workers: int | None, shard: Shard | None) -> bool:
    config = read_config(screen_dir)  # once: what follows passes it on
    if not (screen_dir / FILES).exists() or config.files is None:  # launched in the background, or killed while listing: list now
        if shard is not None:
            raise runs.RunError(f"{screen_dir} has no file list yet: shards score a list made before they start (screen --slurm-tasks makes it)")
        runs.write_status(screen_dir, "running", message="listing files", done=0, total=None)
        config = list_files(screen_dir, config)
    score_parts(screen_dir, config, loaded, workers, shard)
    return merge_when_complete(screen_dir, config)


def finish_screen(screen_dir: Path, loaded: LoadedModel, workers: int | None = None, shard: Shard | None = None) -> Path:
    """Score what is missing (of `shard`'s parts, given one), then merge scores.csv and mark the job completed once
    every part is written; SIGTERM is recorded as 'cancelled', a failure as 'failed', then raised."""
    with _recorded(screen_dir):
        _finish(screen_dir, loaded, workers, shard)
    return screen_dir


def resume_screen(screen_dir: Path, device: str = "cpu", workers: int | None = None, shard: Shard | None = None) -> Path:
    """Finish a job that was killed, failed, cancelled or is queued (the background process of launch_screen starts
    here); a completed one is left as it is, one running in another process is refused. Given a shard, score only
    its parts and merge if they were the last (shards run side by side, so they are never refused as running)."""
    screen_dir = Path(screen_dir)
    status = runs.read_json(screen_dir / runs.STATUS)
    state = runs.effective_state(status)
    if state == "completed":
        return screen_dir
    if shard is None and state in ("running", "queued") and status.get("pid") not in (None, os.getpid()):
        raise runs.RunError(f"screening job {screen_dir} is still running (pid {status['pid']} on {status.get('host')})")
    with _recorded(screen_dir):
        runs.write_status(screen_dir, "running", message="loading the model" + (f" (shard {shard[0]}/{shard[1]})" if shard else ""))
        _finish(screen_dir, load_screen_model(screen_dir, device), workers, shard)
    return screen_dir


def screen(sources: list[str], model: str = "default", name: str | None = None, screens_dir: Path | None = None, device: str = "cpu") -> Path:
    """A whole job, start to finish: returns its folder (scores.csv is there)."""
    loaded = load_model(model, runs.default_runs_dir(), device)
    screen_dir = create_screen(sources, model, loaded, default_batch_size(loaded.device), screens_dir or default_screens_dir(), name)
    return finish_screen(screen_dir, loaded)


def outcome(screen_dir: Path) -> tuple[bool, dict | None]:
    """Whether the job is completed, and the counts it recorded then (merge.write_scores'; None from a wildvision
    that did not count, or while it is not completed)."""
    status = runs.read_json(Path(screen_dir) / runs.STATUS)
    return status.get("state") == "completed", status.get("counts")
