"""The decision store against damaged, missing and hostile input: real SQLite files, a real file-size limit for a full
disk, real CSV files for `review --import`, and two reviewers deciding one photo."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wildvision.cli import main
from wildvision.screening import decisions
from wildvision.screening.decisions import current, decide, history, import_csv

NAMES = ["a.jpg", "b.jpg", "c.jpg", os.fsdecode(b"caf\xe9.jpg")]


@pytest.fixture
def screen(tmp_path: Path) -> Path:
    """A screening folder with a small scores.csv, one of its names not UTF-8 (held as surrogates, os.fsdecode)."""
    folder = tmp_path / "screens" / "market"
    folder.mkdir(parents=True)
    with open(folder / "scores.csv", "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "sha256", "probability", "label", "duplicate_group", "error"])
        for number, name in enumerate(NAMES):
            writer.writerow([name, f"{number:064x}", 0.9, "captive", "", ""])
    return folder


def damaged(screen: Path) -> bytes:
    """Decide two photos, then cut the store short as a crash or a full disk might; returns the bytes left."""
    decide(screen, ["a.jpg"], "captive", "ana")
    decide(screen, ["b.jpg"], "not_captive", "ana")
    store = screen / decisions.DATABASE
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{store}{suffix}").exists()  # the last connection checkpointed the log into the file
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    return store.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_store_is_refused_in_words_and_left_as_it_was(screen: Path, damage: str, capsys) -> None:
    if damage == "truncated":
        left = damaged(screen)
    else:
        left = b"this is not a database, it is a note someone saved here\n" * 200
        (screen / decisions.DATABASE).write_bytes(left)
    for attempt in (
        lambda: current(screen),
        lambda: history(screen),
        lambda: decisions.adopted_threshold(screen),
        lambda: decide(screen, ["c.jpg"], "captive", "ana"),
        lambda: decisions.adopt_threshold(screen, 0.8, "ana"),
    ):
        with pytest.raises(decisions.DecisionsUnreadable) as refused:
            attempt()
        message = str(refused.value)
        assert "market" in message and "damaged" in message and "nothing was changed" in message, message
    assert (screen / decisions.DATABASE).read_bytes() == left

    assert main(["review", str(screen)]) == 2
    assert main(["review", str(screen), "--decide", "c.jpg=captive", "--reviewer", "ana"]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err
    assert (screen / decisions.DATABASE).read_bytes() == left


def test_viewing_a_job_creates_no_store(screen: Path) -> None:
    assert current(screen) == {}
    assert history(screen) == []
    assert decisions.adopted_threshold(screen) is None
    assert main(["review", str(screen)]) == 0
    assert not (screen / decisions.DATABASE).exists()
    decide(screen, ["a.jpg"], "captive", "ana")  # writing creates it
    assert set(current(screen)) == {"a.jpg"}
    with pytest.raises(ValueError, match="is not a screening folder"):
        current(screen.parent / "no-such-job")  # a mistyped folder is not a job without decisions


FULL_DISK = """
import resource, signal, sys
from wildvision.screening import decisions
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
if sys.argv[2] == "view":
    print(sorted(decisions.current(sys.argv[1])), len(decisions.history(sys.argv[1])), decisions.adopted_threshold(sys.argv[1]))
    sys.exit(0)
try:
    decisions.decide(sys.argv[1], ["a.jpg"], "captive", "ana")
except decisions.DecisionsUnwritable as error:
    print(error)
    sys.exit(3)
"""


def on_a_full_disk(screen: Path, what: str) -> subprocess.CompletedProcess:
    """FULL_DISK in a process of its own under a real limit on file size (RLIMIT_FSIZE 0): every write fails as on a full disk."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(FULL_DISK), str(screen), what], capture_output=True, text=True, timeout=120)


def test_a_full_disk_leaves_no_empty_store_and_says_so(screen: Path) -> None:
    done = on_a_full_disk(screen, "decide")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "market" in done.stdout and "nothing was saved" in done.stdout and "Traceback" not in done.stderr
    assert sorted(path.name for path in screen.iterdir()) == ["scores.csv"]  # no 0-byte store, no temporary left behind
    decide(screen, ["a.jpg"], "captive", "ana")  # with room again the store is created as ever
    assert set(current(screen)) == {"a.jpg"}


def test_a_decided_job_can_be_viewed_on_a_full_disk(screen: Path) -> None:
    decide(screen, ["a.jpg"], "captive", "ana")
    before = (screen / decisions.DATABASE).read_bytes()
    done = on_a_full_disk(screen, "view")
    assert done.returncode == 0 and done.stdout == "['a.jpg'] 1 None\n", done.stdout + done.stderr
    assert (screen / decisions.DATABASE).read_bytes() == before


def test_a_decision_on_a_photo_decided_since_it_was_shown_is_refused(screen: Path) -> None:
    decide(screen, ["a.jpg"], "captive", "ana", shown={})  # ana saw it undecided: saved
    with pytest.raises(decisions.DecidedMeanwhile) as refused:
        decide(screen, ["a.jpg"], "not_captive", "ben", shown={"a.jpg": None})  # ben saw it undecided too
    assert str(refused.value) == "decided meanwhile by ana as Captive / for sale"
    assert refused.value.decision == current(screen)["a.jpg"]
    assert [(d.label, d.reviewer) for d in history(screen, "a.jpg")] == [("captive", "ana")]  # nothing of ben's saved

    seen = current(screen)["a.jpg"]  # offered again, ben now sees ana's decision and changes it
    decide(screen, ["a.jpg"], "not_captive", "ben", shown={"a.jpg": seen})
    with pytest.raises(decisions.DecidedMeanwhile, match="decided meanwhile by ben as Not captive"):
        decide(screen, ["a.jpg"], "unsure", "ana", shown={"a.jpg": seen})
    assert [(d.label, d.reviewer) for d in history(screen, "a.jpg")] == [("captive", "ana"), ("not_captive", "ben")]

    decide(screen, ["b.jpg", "c.jpg"], "captive", "ana", shown={})  # a group: any member decided since counts
    decide(screen, ["c.jpg"], "not_captive", "cleo")
    with pytest.raises(decisions.DecidedMeanwhile, match="by cleo as Not captive"):  # in the same second, too
        decide(screen, ["b.jpg", "c.jpg"], "captive", "ana", shown=dict.fromkeys(["b.jpg", "c.jpg"], current(screen)["b.jpg"]))


def test_non_utf8_names_are_decided_and_read_back_as_they_were(screen: Path) -> None:
    name = NAMES[3]
    assert name in decisions.scored_items(screen)
    decide(screen, [name], "captive", "ana")
    assert list(current(screen)) == [name]
    assert [d.path for d in history(screen)] == [name]


def imported(screen: Path, tmp_path: Path, text: str, *extra: str) -> tuple[int, str]:
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(text, encoding="utf-8")
    code = main(["review", str(screen), "--import", str(sheet), *extra])
    return code, sheet.name


def test_import_refuses_an_oversized_field_by_line(screen: Path, tmp_path: Path, capsys) -> None:
    code, _ = imported(screen, tmp_path, "path,label,note\na.jpg,captive,fine\nb.jpg,captive," + "x" * 200_000 + "\n", "--reviewer", "ana")
    err = capsys.readouterr().err
    assert code == 2 and "line 3" in err and "10,000 characters" in err and "Traceback" not in err, err
    code, _ = imported(screen, tmp_path, "path,label,note\na.jpg,captive," + "y" * 20_000 + "\n", "--reviewer", "ana")
    err = capsys.readouterr().err
    assert code == 2 and "line 2" in err and "10,000 characters" in err, err
    assert current(screen) == {}


def test_import_refuses_a_column_given_twice(screen: Path, tmp_path: Path, capsys) -> None:
    code, _ = imported(screen, tmp_path, "path,label,label\na.jpg,captive,not_captive\n", "--reviewer", "ana")
    err = capsys.readouterr().err
    assert code == 2 and "'label'" in err and "twice" in err, err
    assert current(screen) == {}


def test_import_records_the_importer_and_refuses_a_reviewer_column(screen: Path, tmp_path: Path, capsys) -> None:
    code, _ = imported(screen, tmp_path, 'path,label,reviewer\na.jpg,captive,=HYPERLINK("http://x")\n', "--reviewer", "ana")
    err = capsys.readouterr().err
    assert code == 2 and "reviewer column" in err, err
    assert current(screen) == {}
    assert imported(screen, tmp_path, "path,label,note\na.jpg,captive,checked\n", "--reviewer", "ana")[0] == 0
    assert [(d.path, d.reviewer, d.note) for d in current(screen).values()] == [("a.jpg", "ana", "checked")]


def test_import_refuses_a_file_that_is_not_utf8(screen: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "latin1.csv"
    sheet.write_bytes("path,label,note\na.jpg,captive,très bien\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        import_csv(screen, sheet, "ana")
    assert current(screen) == {}


def test_a_store_creation_killed_before_it_finished_leaves_nothing_after_the_next_decision(screen: Path) -> None:
    """kill -9 while the first decision built the store leaves its temporary files; the next creation removes them."""
    killed = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    stale = [screen / f".{decisions.DATABASE}.{killed.stdout.strip()}.0a1b2c3d.tmp{suffix}" for suffix in ("", "-journal", "-wal")]
    running = screen / f".{decisions.DATABASE}.{os.getpid()}.cafe0123.tmp"  # a creation still under way keeps its file
    for leftover in (*stale, running):
        leftover.write_bytes(b"half a database")
    decide(screen, ["a.jpg"], "captive", "ana")
    assert not [path.name for path in stale if path.exists()] and running.exists()
    assert list(current(screen)) == ["a.jpg"]
