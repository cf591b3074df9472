"""The decision store behind review: real SQLite files in a temporary screening folder, real processes deciding at once."""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from wildvision.cli.screening import add_review_arguments, run_review
from wildvision.screening import decision_store, decisions
from wildvision.screening.decisions import current, decide, history, import_csv, measured_precision

SCORES = [  # path, probability, the model's label, duplicate group
    ("a.jpg", 0.97, "captive", "g1"),
    ("a-copy.jpg", 0.96, "captive", "g1"),
    ("b.jpg", 0.91, "captive", ""),
    ("c.jpg", 0.82, "captive", ""),
    ("d.jpg", 0.71, "captive", ""),
    ("e.jpg", 0.20, "not_captive", ""),
]


@pytest.fixture
def screen(tmp_path: Path) -> Path:
    """A screening folder with a small scores.csv, as a screening job writes it."""
    folder = tmp_path / "screens" / "job"
    folder.mkdir(parents=True)
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sha256", "probability", "label", "duplicate_group", "error"])
        for path, probability, label, group in SCORES:
            writer.writerow([path, f"sha-{path}", probability, label, group, ""])
        writer.writerow(["broken.jpg", "", "", "", "", "cannot identify image file"])
    return folder


def test_decide_and_change_keep_both_in_history(screen: Path) -> None:
    decide(screen, ["b.jpg"], "captive", "ana", note="cage visible")
    decide(screen, ["b.jpg"], "not_captive", "ben")
    now = current(screen)
    assert list(now) == ["b.jpg"]
    assert (now["b.jpg"].label, now["b.jpg"].reviewer, now["b.jpg"].note) == ("not_captive", "ben", None)
    assert (now["b.jpg"].sha256, now["b.jpg"].decided_at[-6:]) == ("sha-b.jpg", "+00:00")  # copied from scores.csv; UTC
    changes = history(screen, "b.jpg")
    assert [(c.label, c.reviewer, c.note, c.previous_label) for c in changes] == [
        ("captive", "ana", "cage visible", None),
        ("not_captive", "ben", None, "captive"),
    ]
    assert (screen / "scores.csv").read_text(encoding="utf-8").count("\n") == len(SCORES) + 2  # the model's file is untouched


def test_store_has_a_schema_version_and_history_is_append_only(screen: Path) -> None:
    decide(screen, ["c.jpg"], "unsure", "ana")
    with contextlib.closing(decision_store.open_store(screen)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == decision_store.SCHEMA_VERSION
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM history")
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(ValueError, match="newer wildvision"):
        decision_store.open_store(screen)


def test_labels_and_paths_are_checked(screen: Path) -> None:
    with pytest.raises(ValueError, match="'maybe' is not a label here; use one of: not_captive, captive, unsure"):
        decide(screen, ["b.jpg"], "maybe", "ana")
    with pytest.raises(ValueError, match="nowhere.jpg is not in this screening job's scores.csv"):
        decide(screen, ["b.jpg", "nowhere.jpg"], "captive", "ana")
    decide(screen, ["b.jpg"], "wild", "ana", allowed_labels=("wild", "pet"))  # another model's class names
    assert current(screen)["b.jpg"].label == "wild"
    assert len(history(screen)) == 1  # the refused calls saved nothing


def test_group_decision_sets_every_member_at_once(screen: Path) -> None:
    decide(screen, ["a.jpg", "a-copy.jpg"], "captive", "ana", note="same listing")
    now = current(screen)
    assert {path: (d.label, d.duplicate_group, d.note) for path, d in now.items()} == {
        "a.jpg": ("captive", "g1", "same listing"),
        "a-copy.jpg": ("captive", "g1", "same listing"),
    }
    assert len({d.decided_at for d in now.values()}) == 1


def test_import_applies_all_rows_or_none(screen: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,note\nb.jpg,captive,ok\nc.jpg,maybe,\nd.jpg,not_captive,\nghost.jpg,captive,\n", encoding="utf-8")
    with pytest.raises(ValueError) as raised:
        import_csv(screen, bad, "ana")
    assert "line 3: 'maybe' is not a label here" in str(raised.value)
    assert "line 5: ghost.jpg is not in this screening job's scores.csv" in str(raised.value)
    assert current(screen) == {} and history(screen) == []

    good = tmp_path / "good.csv"
    good.write_text("\ufeffpath,label,note\nb.jpg,captive,ok\nc.jpg,not_captive,\n", encoding="utf-8")  # as a spreadsheet saves it
    assert import_csv(screen, good, "ana") == 2
    assert {path: (d.label, d.reviewer, d.note) for path, d in current(screen).items()} == {
        "b.jpg": ("captive", "ana", "ok"),
        "c.jpg": ("not_captive", "ana", None),
    }

    no_label = tmp_path / "no_label.csv"
    no_label.write_text("path,verdict\nb.jpg,captive\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs the columns path and label"):
        import_csv(screen, no_label, "ana")


def _decide_many(screen: str, worker: int, count: int, barrier) -> None:
    barrier.wait()
    for i in range(count):
        decide(screen, [f"w{worker}/{i}.jpg"], "captive" if i % 2 else "not_captive", f"worker{worker}")


def _decide_same(screen: str, label: str, count: int, barrier) -> None:
    barrier.wait()
    for _ in range(count):
        decide(screen, ["shared.jpg"], label, label)


def test_processes_deciding_at_once_lose_nothing(tmp_path: Path) -> None:
    """Four processes decide 300 distinct items each while two flip one item 150 times each, all on a store none of
    them has created yet; every decision must be there afterwards and history must hold each call in a valid order."""
    screen = tmp_path / "job"  # no scores.csv: any path may be decided
    screen.mkdir()
    writers, distinct, flips = 4, 300, 150
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers + 2)
    processes = [context.Process(target=_decide_many, args=(str(screen), w, distinct, barrier)) for w in range(writers)]
    processes += [context.Process(target=_decide_same, args=(str(screen), label, flips, barrier)) for label in ("captive", "not_captive")]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0] * len(processes)

    now = current(screen)
    assert len(now) == writers * distinct + 1
    assert all(f"w{w}/{i}.jpg" in now for w in range(writers) for i in range(distinct))
    assert len(history(screen)) == writers * distinct + 2 * flips
    flipped = history(screen, "shared.jpg")
    assert Counter(c.label for c in flipped) == {"captive": flips, "not_captive": flips}
    # each change saw the one before it: no two writers read the same previous label and both wrote
    assert [c.previous_label for c in flipped] == [None] + [c.label for c in flipped[:-1]]
    assert now["shared.jpg"].label == flipped[-1].label


def test_wilson_interval_matches_the_hand_computed_value() -> None:
    # 8 of 10: p = 0.8, z = 1.96: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) = [0.4902, 0.9433]
    decided = [decisions.Decision(f"{i}.jpg", "captive" if i < 8 else "not_captive", "ana", None, "") for i in range(10)]
    decided += [decisions.Decision("u.jpg", "unsure", "ana", None, ""), decisions.Decision("x.jpg", "not_captive", "ana", None, "")]
    precision, low, high, n = measured_precision(decided, "captive", flagged={f"{i}.jpg" for i in range(10)} | {"u.jpg"})
    assert (precision, round(low, 3), round(high, 3), n) == (0.8, 0.490, 0.943, 10)
    assert measured_precision([], "captive").n == 0


def review(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_review_arguments(parser)
    return run_review(parser.parse_args(list(argv)))


def test_review_command(screen: Path, tmp_path: Path, capsys) -> None:
    assert review(str(screen), "--decide", "a.jpg=captive", "--decide", "c.jpg=not_captive", "--reviewer", "ana", "--note", "checked") == 0
    assert "saved 2 decisions by ana" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--decide nowhere.jpg=captive: nowhere.jpg is not in this screening job's scores.csv"):
        review(str(screen), "--decide", "b.jpg=captive", "--decide", "nowhere.jpg=captive")
    with pytest.raises(ValueError, match="write PATH=LABEL"):
        review(str(screen), "--decide", "b.jpg")
    assert "b.jpg" not in current(screen)  # the refused command saved none of its decisions

    csv_path = tmp_path / "more.csv"
    csv_path.write_text("path,label\nb.jpg,captive\ne.jpg,captive\nd.jpg,unsure\n", encoding="utf-8")
    assert review(str(screen), "--import", str(csv_path), "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"imported 3 decisions from {csv_path}"
    assert any(line.startswith("a.jpg\tcaptive\tana\t") and line.endswith("\tchecked") for line in lines)
    # flagged and decided captive or not: a, b captive, c not (e.jpg was not flagged, d.jpg is unsure)
    assert (
        lines[-1]
        == "5 decided (captive 3, not_captive 1, unsure 1); measured precision 66.7% (95% interval 20.8% to 93.9%), 3 flagged items decided captive or not"
    )

    empty = tmp_path / "empty-job"
    empty.mkdir()
    assert review(str(empty)) == 0
    assert capsys.readouterr().out == "no decisions yet\n"
