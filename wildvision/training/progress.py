"""How far a training run has come and how long it has left, over every phase its process goes through.

A run's process checks its photos (when the dashboard started it: the page must answer at once), scores its test
sets with the models it is compared with (wildvision.training.compare), computes stored backbone features for head-only
epochs, trains its epochs, evaluates the best epoch on every test set and fits the unlike-the-training-photos
summary. It records where it is in status.json's `progress` (docs/run-folder.md): the phase in words, its step among
the run's phases, how far into it, and the seconds left in the phase and in the whole run. Time left is estimated
from what this process has measured; where it needs a rate not measured yet (the time of an epoch of a kind still to
come, the run's forward pass per photo) it is None, which readers show as "not yet known", never as a guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from wildvision import runs
from wildvision.training.config import TrainConfig

CHECKING, COMPARISON, FEATURES, EPOCHS, EVALUATION, NOVELTY = "checking", "comparison", "features", "epochs", "evaluation", "novelty"
PHASES = (CHECKING, COMPARISON, FEATURES, EPOCHS, EVALUATION, NOVELTY)
CHECKING_WORDS = "checking the photos: splitting them into train and test_in, and looking for copies and label conflicts"
NOVELTY_WORDS = "fitting the unlike-the-training-photos summary"
REPORT_EVERY_S = 2.0  # status.json is rewritten at most this often within a phase


def epoch_kind(train_all_layers: bool, on_stored_features: bool) -> tuple[bool, bool]:
    """Epochs of one kind take about the same time: all layers, head only, head only on stored features."""
    return train_all_layers, on_stored_features


def epochs_left(config: TrainConfig, metrics: list[dict], fraction: float = 0.0) -> float | None:
    """Seconds the epochs still to run take if early stopping does not end them sooner, from the epochs of the same
    kind run so far (the one-off computation of stored features left out); None while a kind to come is untimed.
    `fraction`: how far into the next epoch the run is."""
    times: dict[tuple[bool, bool], list[float]] = {}
    for row in metrics:
        kind = epoch_kind(row.get("phase") == "all_layers", bool(row.get("on_stored_features")))
        times.setdefault(kind, []).append(row["epoch_time_s"] - row.get("feature_cache_s", 0.0))
    left = 0.0
    for epoch in range(len(metrics) + 1, config.epochs + 1):
        _, phase = config.phase_at(epoch)
        kind = epoch_kind(phase.train_all_layers, config.on_stored_features(phase))
        if kind not in times:
            return None
        share = 1 - fraction if epoch == len(metrics) + 1 else 1.0
        left += share * sum(times[kind]) / len(times[kind])
    return left


def run_phases(config: TrainConfig, checking: bool, comparing: bool) -> list[str]:
    """The phases a run goes through, in order."""
    stored = any(config.on_stored_features(phase) for phase in config.phases())
    return ([CHECKING] if checking else []) + ([COMPARISON] if comparing else []) + ([FEATURES] if stored else []) + [EPOCHS, EVALUATION, NOVELTY]


@dataclass
class Tracker:
    """The training process's record of where it stands, written into status.json as it goes.

    `photos` holds the forward passes (photos) of the phases after the epochs, once the split is known; the run's
    forward pass per photo (`seconds_per_photo`) is measured on stored features, validation passes and evaluation."""

    run_dir: Path
    config: TrainConfig
    checking: bool = False  # this process checks the photos first (runs started from the dashboard)
    phases: list[str] = field(default_factory=list)
    photos: dict[str, int] = field(default_factory=dict)  # EVALUATION and NOVELTY: photos their forward passes go over
    test_in: int = 0
    seconds_per_photo: float | None = None
    phase: str | None = None
    _started: float = 0.0
    _first_done: float | None = None
    _written: float = 0.0

    def plan(self, comparing: bool, train: int = 0, test_in: int = 0, tests: int = 0) -> None:
        """The run's phases, and the photos of those after the epochs once the split is known."""
        self.phases = run_phases(self.config, self.checking, comparing)
        self.photos = {EVALUATION: test_in + tests, NOVELTY: train + test_in}
        self.test_in = test_in

    def start(self, phase: str, words: str, done: float | None = None, total: float | None = None) -> None:
        """A phase begins; its status is written at once."""
        self.phase, self._started, self._first_done = phase, time.monotonic(), None
        self.report(words, done, total, force=True)

    def report(self, words: str, done: float | None = None, total: float | None = None, force: bool = False, **fields) -> None:
        """Where the phase stands; written when forced or REPORT_EVERY_S after the last write."""
        now = time.monotonic()
        if self._first_done is None and done is not None:
            # Timed from the first count on: what came before it may have cost nothing (features already cached)
            self._first_done, self._started = done, now
        if not force and now - self._written < REPORT_EVERY_S:
            return
        phase_left = self._phase_left(done, total)
        after = self._after(self.phase)
        run_left = phase_left + after if phase_left is not None and after is not None else None
        step = self.phases.index(self.phase) + 1 if self.phase in self.phases else None
        progress = {
            "phase": self.phase,
            "words": words,
            "step": step,
            "steps": len(self.phases) or None,
            "done": done,
            "total": total,
            "phase_seconds_left": None if phase_left is None else round(phase_left, 1),
            "seconds_left": None if run_left is None else round(run_left, 1),
        }
        runs.write_status(self.run_dir, "running", progress=progress, **fields)
        self._written = now

    def counted(self, words: str, done: int, total: int, work: float | None = None, total_work: float | None = None) -> None:
        """report() for a phase counted in photos: "WORDS: 400 of 1,250 photos". Where photos cost unequal work
        (stored features: a training photo has several views), `work` and `total_work` time the phase instead."""
        self.report(f"{words}: {done:,} of {total:,} photos", done if work is None else work, total if total_work is None else total_work)

    def epoch(self, epoch: int, batch: int | None = None, batches: int | None = None) -> None:
        """Epoch `epoch` (1-based) is under way, `batch` of its `batches` done (head-only epochs on stored features
        are not counted in batches)."""
        if self.phase != EPOCHS:
            self.phase, self._started, self._first_done, self._written = EPOCHS, time.monotonic(), None, 0.0
        words = f"epoch {epoch} of at most {self.config.epochs}" + (f", batch {batch} of {batches}" if batches else "")
        self.report(words, epoch - 1 + (batch / batches if batches else 0.0), self.config.epochs, epoch=epoch, batch=batch, batches=batches)

    def epoch_done(self, row: dict, best_epoch: int) -> None:
        """An epoch ended (its metrics.jsonl row, already written): a validation pass over test_in on the whole network
        times the run's forward pass per photo."""
        if not row.get("on_stored_features") and self.test_in:
            self.measured(row["epoch_time_s"] - row["train_time_s"], self.test_in)
        words = f"epoch {row['epoch']} of at most {self.config.epochs} done"
        self.report(words, row["epoch"], self.config.epochs, force=True, epoch=row["epoch"], best_epoch=best_epoch, batch=None, batches=None)

    def measure_phase(self, done: float) -> None:
        """The phase under way has done `done` units of forward passes: its rate is the run's forward pass per photo."""
        rate = self.photo_rate(done)
        if rate is not None:
            self.seconds_per_photo = rate

    def photo_rate(self, done: float) -> float | None:
        """Seconds per unit of work in the phase under way, from what this process has done of it."""
        worked = done - (self._first_done or 0.0)
        return (time.monotonic() - self._started) / worked if worked > 0 else None

    def measured(self, seconds: float, photos: float) -> None:
        """A forward pass of the run's model over `photos` photos took `seconds`."""
        if photos > 0 and seconds > 0:
            self.seconds_per_photo = seconds / photos

    def _phase_left(self, done: float | None, total: float | None) -> float | None:
        if self.phase == EPOCHS:
            metrics = runs.read_metrics(self.run_dir)
            return epochs_left(self.config, metrics, (done or 0.0) - len(metrics))
        if self.phase == NOVELTY:
            return self._photos_time(self.photos.get(NOVELTY, 0) - (done or 0.0))
        if done is None or total is None:
            return None
        rate = self.photo_rate(done)
        if self.phase == EVALUATION and rate is not None:
            self.seconds_per_photo = rate
        return rate * (total - done) if rate is not None else None

    def _photos_time(self, photos: float) -> float | None:
        return photos * self.seconds_per_photo if self.seconds_per_photo is not None else None

    def _after(self, phase: str | None) -> float | None:
        """Seconds the phases after `phase` take; None when one of them cannot be estimated yet."""
        later = self.phases[self.phases.index(phase) + 1 :] if phase in self.phases else []
        left = 0.0
        for name in later:
            if name in (EVALUATION, NOVELTY):
                part = self._photos_time(self.photos.get(name, 0))
            elif name == EPOCHS:
                part = epochs_left(self.config, runs.read_metrics(self.run_dir))
            else:  # checking, comparison and stored features all come before the first measured rate
                part = None
            if part is None:
                return None
            left += part
        return left
