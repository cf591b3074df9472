"""The paper's test_out_nopet builder on the real WordNet 3.0 (Debian's wordnet-base) and real Flickr8k photos."""

from __future__ import annotations

import argparse
import csv
import os

import pytest

from conftest import DEMO, demo_subset
from wildvision.cli import build_parser
from wildvision.wordnet_filter import (
    DROPPED_CSV,
    LINKS_MANIFEST,
    NO_CAPTION,
    AnimalWords,
    WordNetMissingError,
    lexnames_text,
    load_wordnet,
    read_captions,
    write_output,
)


@pytest.fixture(scope="module")
def animal_words() -> AnimalWords:
    """The classifier on this machine's WordNet; CI installs wordnet-base, so there it must not skip."""
    try:
        return AnimalWords(load_wordnet())
    except WordNetMissingError as error:
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(f"{error}; WILDVISION_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(str(error))


def filter_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["data", "wordnet-filter", *argv])


def run_filter(args: argparse.Namespace) -> int:
    """What `python -m wildvision data wordnet-filter ARGS` runs, in this process."""
    return args.func(args)


def test_lexnames_is_wordnet_30s_list_of_45_lexicographer_files():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[18] == "18\tnoun.person\t1"
    assert lines[44] == "44\tadj.ppl\t3"


def test_missing_wordnet_says_what_to_install(tmp_path):
    with pytest.raises(WordNetMissingError, match="apt-get install wordnet-base"):
        load_wordnet(tmp_path)


def test_words_are_read_by_their_first_noun_sense(animal_words):
    assert animal_words.wordnet.get_version() == "3.0"
    assert animal_words.names_animal("dog")
    assert animal_words.names_animal("Horse")
    assert animal_words.names_animal("puppies")  # lemmatised by WordNet
    assert not animal_words.names_animal("man")  # a person, under organism rather than animal
    assert not animal_words.names_animal("human")  # first sense homo.n.02 is a hominid, but people are excluded
    assert not animal_words.names_animal("bicycle")
    assert not animal_words.names_animal("blue")  # only a later sense is a butterfly
    assert animal_words.names_animal("young")  # no part-of-speech tagging: the noun reading counts
    assert not animal_words.names_animal("qwzx")
    assert animal_words.in_text("A man walking two dogs past a bicycle .") == ["dogs"]


def test_filter_keeps_the_demo_datas_pet_free_flickr_photos(animal_words, shared, tmp_path):
    images = demo_subset(tmp_path, {"other": 60}, source="test_out_pet") / "other"
    out = tmp_path / "nopet"
    assert run_filter(filter_args("--captions", str(DEMO / "flickr8k_captions.csv"), str(images), "--out", str(out))) == 0

    names = {path.name for path in images.iterdir()}
    expected = names & {path.name for path in (DEMO / "test_out_nopet" / "other").iterdir()}
    links = {path.name: path for path in out.iterdir() if path.suffix == ".jpg"}
    assert set(links) == expected and 0 < len(expected) < len(names)
    assert all(link.is_symlink() and link.resolve() == (images / name).resolve() for name, link in links.items())

    with (out / DROPPED_CSV).open(newline="") as file:
        dropped = list(csv.DictReader(file))
    assert {row["image"] for row in dropped} == names - expected
    captions = read_captions(DEMO / "flickr8k_captions.csv")
    for row in dropped:
        text = " ".join(captions[row["image"]]).lower()
        assert row["words"] and all(word in text for word in row["words"].split())
    assert len(list(images.iterdir())) == 60  # the user's folder is untouched


def test_an_uncaptioned_photo_is_dropped_and_a_rerun_refreshes_its_own_links(animal_words, shared, tmp_path):
    images = demo_subset(tmp_path, {"other": 5}, source="test_out_pet") / "other"
    (images / "asirra-listing.jpg").symlink_to(next((DEMO / "test_out_pet" / "captive").iterdir()))
    (images / "=HYPERLINK(1).jpg").symlink_to(next((DEMO / "test_out_pet" / "captive").iterdir()))  # a name a spreadsheet would run
    out = tmp_path / "nopet"
    args = filter_args("--captions", str(DEMO / "flickr8k_captions.csv"), str(images), "--out", str(out))
    run_filter(args)
    run_filter(args)  # a folder holding only its own links and lists is refreshed
    with (out / DROPPED_CSV).open(newline="") as file:
        reasons = {row["image"]: row["reason"] for row in csv.DictReader(file)}
    assert reasons["asirra-listing.jpg"] == NO_CAPTION
    assert reasons["'=HYPERLINK(1).jpg"] == NO_CAPTION, "shown as text in a spreadsheet"
    assert not (out / "asirra-listing.jpg").exists()


def test_a_captions_file_for_other_photos_is_an_error(animal_words, shared, tmp_path):
    images = demo_subset(tmp_path, {"captive": 3}, source="test_out_pet") / "captive"
    with pytest.raises(ValueError, match="image column"):
        run_filter(filter_args("--captions", str(DEMO / "flickr8k_captions.csv"), str(images), "--out", str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("user_entry", ["photo.jpg", "notes.txt", "link.jpg", "listed.jpg"])
def test_a_folder_of_the_users_files_is_never_overwritten(tmp_path, user_entry):
    """Only links the filter made itself may be replaced; the user's files, links and sub-folders never."""
    out = tmp_path / "out"
    out.mkdir()
    source = tmp_path / "source.jpg"
    source.write_bytes(b"user data")
    if user_entry == "link.jpg":  # a user's own link, in a folder the filter never wrote
        (out / user_entry).symlink_to(source)
    elif user_entry == "listed.jpg":  # named in the filter's list, yet a real file rather than its link
        (out / LINKS_MANIFEST).write_text("listed.jpg\n")
        (out / user_entry).write_bytes(b"user data")
    else:
        (out / user_entry).write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="choose a new or empty --out folder"):
        write_output([], out)
    assert (out / user_entry).read_bytes() == b"user data"


def test_an_existing_file_is_no_output_folder(tmp_path):
    target = tmp_path / "file.jpg"
    target.write_bytes(b"user data")
    with pytest.raises(FileExistsError, match="not a folder"):
        write_output([], target)
    assert target.read_bytes() == b"user data"
