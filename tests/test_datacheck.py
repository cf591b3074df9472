"""The data check on real demo photos and copies made the ways people make them: renamed, shrunk and re-saved,
filed under the wrong class; and the demo data's own label conflict."""

import pandas as pd
import pytest
from PIL import Image

from conftest import DEMO, demo_subset, make_class_folder
from wildvision.cli import main
from wildvision.datacheck import PHASH_THRESHOLD, Subset, check_data, contained_test_sets, fingerprint, match_words, report_lines


def _shrunk_copy(source, target):
    """A copy at half size, re-encoded at JPEG quality 60: what a re-upload does to a photo."""
    with Image.open(source) as image:
        image.convert("RGB").resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(target, "JPEG", quality=60)


def test_exact_near_and_conflicting_copies_are_grouped_and_named(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 8, "wild": 8})
    captive, wild = sorted((data / "captive").iterdir()), sorted((data / "wild").iterdir())
    (data / "captive" / "renamed.jpg").write_bytes(captive[0].read_bytes())
    _shrunk_copy(wild[0], data / "wild" / "smaller.jpg")
    (data / "wild" / "misfiled.jpg").write_bytes(captive[1].read_bytes())
    (data / "wild" / "broken.jpg").write_bytes(wild[1].read_bytes()[:500])
    test = demo_subset(tmp_path, {"captive": 3, "other": 3}, source="test_out_pet")
    _shrunk_copy(wild[2], test / "other" / "reposted.jpg")

    report = check_data([data], {"test_out_pet": test})

    groups = {frozenset(m.path.name for m in g.members): g for g in report.groups}
    assert set(groups) == {
        frozenset({captive[0].name, "renamed.jpg"}),
        frozenset({wild[0].name, "smaller.jpg"}),
        frozenset({captive[1].name, "misfiled.jpg"}),
        frozenset({wild[2].name, "reposted.jpg"}),
    }
    exact, near = groups[frozenset({captive[0].name, "renamed.jpg"})], groups[frozenset({wild[0].name, "smaller.jpg"})]
    assert exact.identical and exact.kind == "within-data" and not exact.conflict
    assert not near.identical and 0 <= near.distance <= PHASH_THRESHOLD and near.kind == "within-data"
    assert match_words(exact) == "identical files"
    assert match_words(near) == (
        f"near-duplicate (perceptual hashes {near.distance} of 64 bits apart at most)" if near.distance else "looks identical (a re-saved copy)"
    )
    assert match_words(type(near)(near.members, False, 0)) == "looks identical (a re-saved copy)", "not 'pHash <= 0 bits apart'"
    (conflict,) = report.conflicts
    assert {m.path.name for m in conflict.members} == {captive[1].name, "misfiled.jpg"} and conflict.places == ("train/captive", "train/wild")
    assert report.test_leaks() == {"test_out_pet": [test / "other" / "reposted.jpg"]}
    by_class = {(c.source, c.class_name): c for c in report.classes}
    assert by_class[("train", "wild")].images == 11 and by_class[("train", "captive")].images == 9
    assert [p.name for p, _ in by_class[("train", "wild")].unreadable] == ["broken.jpg"] and report.unreadable == 1
    assert by_class[("train", "captive")].share == 9 / 20
    low, median, high = by_class[("train", "captive")].widths
    assert 0 < low <= median <= high
    text = "\n".join(report_lines(report))
    assert "misfiled.jpg" in text and "smaller.jpg" in text and "broken.jpg" in text and "reposted.jpg" in text
    assert "4 duplicate groups" in text and "1 label conflicts" in text and "test_out_pet: 1 images also in a data folder" in text


def test_distinct_demo_photos_are_not_matched(shared, tmp_path):
    data = demo_subset(tmp_path, {"captive": 60, "wild": 60, "background": 20})
    report = check_data([data])
    assert [c.images for c in report.classes] == [20, 60, 60] and not report.unreadable
    # the first photos of each class hold no copies; a near match here would be a false one
    assert report.groups == ()


def test_the_demo_datas_polecat_is_found_under_both_classes(shared):
    report = check_data([DEMO / "train"])
    conflicts = [{str(m.path.relative_to(DEMO)) for m in g.members} for g in report.conflicts]
    assert {"train/captive/imagenet-n02443114_polecat.jpg", "train/wild/imagenet-n02443114_polecat.jpg"} in conflicts


def test_the_command_prints_the_report_and_exits_by_what_it_found(tmp_path, capsys):
    clean = make_class_folder(tmp_path / "clean", {"captive": 3, "wild": 3})
    extra = make_class_folder(tmp_path / "extra", {"captive": 2, "other": 2}, seed=4)
    assert main(["data", "check", str(clean), "--test", f"extra={extra}"]) == 0
    assert "0 duplicate groups" in capsys.readouterr().out
    (clean / "wild" / "again.png").write_bytes((clean / "captive" / "img0.png").read_bytes())
    assert main(["data", "check", str(clean)]) == 1
    assert "again.png" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().out


def test_checking_the_demo_data_names_its_conflicts_and_duplicate_groups(shared, capsys):
    """The issue's own command: test sets given as bare folders are named by their folder."""
    code = main(["data", "check", str(DEMO / "train"), "--test", str(DEMO / "test_out_pet"), "--test", str(DEMO / "test_out_nopet")])
    out = capsys.readouterr().out
    assert code == 1
    assert "imagenet-n02443114_polecat.jpg" in out and "conflict" in out.lower()
    assert "test_out_pet" in out and "test_out_nopet" in out and "duplicate groups" in out


def test_the_findings_as_tables_samples_and_thumbnails(shared, tmp_path):
    from wildvision.datacheck import class_samples, class_table, findings_table, fingerprint, thumbnail

    data = demo_subset(tmp_path, {"captive": 8, "wild": 8})
    captive = sorted((data / "captive").iterdir())
    (data / "wild" / "misfiled.jpg").write_bytes(captive[0].read_bytes())
    (data / "wild" / "broken.jpg").write_bytes(captive[1].read_bytes()[:500])
    before = fingerprint([data])
    report = check_data([data])

    findings = findings_table(report)
    assert list(findings.columns) == ["group", "kind", "source", "class", "path", "match", "reason"]
    conflict = findings[findings["kind"] == "conflict"]
    assert list(conflict["group"]) == [1, 1] and set(conflict["class"]) == {"captive", "wild"} and set(conflict["match"]) == {"identical files"}
    (unreadable,) = findings[findings["kind"] == "unreadable"].itertuples()
    assert unreadable.path.endswith("broken.jpg") and unreadable.reason and unreadable.group is pd.NA
    classes = class_table(report)
    assert list(classes["images"]) == [8, 10] and list(classes["unreadable"]) == [0, 1]
    assert classes["share"].sum() == pytest.approx(1) and classes["width (min / median / max)"].str.count("/").eq(2).all()

    samples = class_samples(data, 6)
    assert [len(paths) for paths in samples.values()] == [6, 6] and samples["captive"][0] == captive[0] and samples["captive"][-1] == captive[-1]
    assert class_samples(data, 20)["captive"] == captive
    assert thumbnail(captive[0], 96).size == (96, 96)

    assert before == fingerprint([data]) and before[0][1] == 18
    (data / "wild" / "broken.jpg").unlink()
    assert fingerprint([data])[0][1] == 17 and fingerprint([tmp_path / "missing"])[0][1] == -1


def test_a_test_set_made_from_anothers_photos_is_named_a_subset(shared, tmp_path):
    """Every photo of `small` is a copy of one in `large` (byte-identical or re-saved), `large` has more: small is a subset
    of large, and large is not one of small; a test set sharing only some photos with another is no subset."""
    large = demo_subset(tmp_path / "large", {"captive": 4, "other": 4}, source="test_out_pet")
    small = tmp_path / "small"
    for index, photo in enumerate(sorted((large / "captive").iterdir())[:2] + sorted((large / "other").iterdir())[:2]):
        (small / photo.parent.name).mkdir(parents=True, exist_ok=True)
        if index % 2:
            _shrunk_copy(photo, small / photo.parent.name / f"copy{index}.jpg")
        else:
            (small / photo.parent.name / f"copy{index}.jpg").write_bytes(photo.read_bytes())
    some = demo_subset(tmp_path / "some", {"captive": 2, "other": 6}, source="test_out_pet")  # 2 + 4 of large's 8, and 2 more

    report = check_data([demo_subset(tmp_path, {"captive": 4, "wild": 4})], {"large": large, "small": small})
    assert contained_test_sets(report) == [Subset("small", "large", 4, 4)]
    assert "Every one of the 4 photos of small is also in large (small is a subset of large)" in "\n".join(report_lines(report))
    assert contained_test_sets(check_data([demo_subset(tmp_path / "train", {"captive": 4, "wild": 4})], {"large": large, "some": some})) == []


def test_the_fingerprint_walks_a_link_loop_once(tmp_path):
    data = make_class_folder(tmp_path / "data", {"captive": 3, "wild": 3})
    (data / "wild" / "up").symlink_to("..")  # wild/up/wild/up/... is the same folder again
    ((folder, count, newest),) = fingerprint([data])
    assert folder == str(data) and count == 6 and newest > 0, "each real folder's files counted once"
