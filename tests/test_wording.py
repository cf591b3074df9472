"""Plain words for the Predict page: verdicts that agree with their numbers, trust said without F-scores."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import write_image
from wildvision import wording
from wildvision.explain import saliency
from wildvision.images import ImageError, open_image

LINE = 0.507  # the default model's threshold


def shown(sentence: str) -> tuple[float, float]:
    """The score and the line as a sentence shows them, read back as numbers."""
    score, line = re.fullmatch(r".*score ([\d.]+)%, .* flagging line of ([\d.]+)%", sentence).groups()
    return float(score), float(line)


# --- percentages and verdicts --------------------------------------------------------------------


@pytest.mark.parametrize("percent, text", [(83.0, "83%"), (50.71, "50.71%"), (91.2, "91.2%"), (0.0, "0%"), (100.0, "100%"), (50.6999, "50.6999%")])
def test_percent_text_drops_trailing_zeros_only(percent, text):
    assert wording.percent_text(percent) == text


def test_the_line_shows_as_the_slider_shows_it():
    assert wording.line_text(LINE) == "50.7%"
    assert wording.line_text(0.739101) == "73.9%"
    assert wording.line_text(0.855) == "85.5%"


@pytest.mark.parametrize(
    "score, line, expected",
    [
        (0.912, 0.855, "Flagged as captive / for sale: score 91.2%, at or above the flagging line of 85.5%"),
        (0.83, 0.855, "Not flagged: score 83%, below the flagging line of 85.5%"),  # the newcomer's photo
        (0.508, LINE, "Flagged as captive / for sale: score 50.8%, at or above the flagging line of 50.7%"),  # same whole percent
        (0.5066, LINE, "Not flagged: score 50.66%, below the flagging line of 50.7%"),  # same at one decimal
        (0.50699, LINE, "Not flagged: score 50.699%, below the flagging line of 50.7%"),  # just below
        (0.50701, LINE, "Flagged as captive / for sale: score 50.701%, at or above the flagging line of 50.7%"),  # just above
        (LINE, LINE, "Flagged as captive / for sale: score 50.7%, at or above the flagging line of 50.7%"),  # exactly on it
        (LINE - 1e-9, LINE, "Not flagged: score 50.6999%, below the flagging line of 50.7%"),  # closer than any decimals
        (0.0, LINE, "Not flagged: score 0%, below the flagging line of 50.7%"),
        (1.0, LINE, "Flagged as captive / for sale: score 100%, at or above the flagging line of 50.7%"),
        (0.0, 0.0, "Flagged as captive / for sale: score 0%, at or above the flagging line of 0%"),
        (0.99999999, 1.0, "Not flagged: score 99.9999%, below the flagging line of 100%"),
        (1.0, 1.0, "Flagged as captive / for sale: score 100%, at or above the flagging line of 100%"),
    ],
)
def test_the_verdict_says_how_the_line_decided_it(score, line, expected):
    assert wording.verdict_sentence(score, line, "captive") == expected


def test_shown_numbers_never_contradict_the_verdict():
    """Scores as the model gives them (float32) around lines as the slider sets them (0.1% steps)."""
    rng = np.random.default_rng(0)
    lines = np.round(rng.uniform(0, 1, 400), 3)
    for line in lines:
        for offset in (0.0, 1e-9, -1e-9, 4e-5, -4e-5, 5e-4, -5e-4, 0.004, -0.004, 0.02):
            score = float(np.float32(min(max(line + offset, 0.0), 1.0)))
            sentence = wording.verdict_sentence(score, float(line), "captive")
            shown_score, shown_line = shown(sentence)
            flagged = sentence.startswith("Flagged")
            assert flagged == (score >= line), sentence
            assert (shown_score >= shown_line) == flagged, sentence
            assert shown_score != shown_line or score == pytest.approx(line, abs=1e-6), f"{score!r} {line!r}: {sentence}"
            assert abs(shown_score - score * 100) <= 0.05 + 1e-9, sentence  # never further off than one decimal allows


def test_the_short_verdict_has_the_sentences_decimals():
    assert wording.short_verdict(0.5066, LINE) == "Not flagged (50.66%)"
    assert (wording.flag_word(0.5066, LINE), wording.flag_word(LINE, LINE)) == ("Not flagged", "Flagged")
    assert wording.short_verdict(0.912, 0.855) == "Flagged (91.2%)"
    assert wording.shown_percents(0.5066, LINE) == (50.66, 50.7)


def test_other_positive_classes_are_named_in_plain_words():
    assert wording.positive_words("for_sale") == "for sale"
    assert wording.verdict_sentence(0.9, 0.5, "for_sale").startswith("Flagged as for sale: score 90%")


# --- how far to trust a model --------------------------------------------------------------------


@pytest.mark.parametrize(
    "fraction, words",
    [
        (0.2988, "about 30"),
        (0.992, "about 99"),
        (0.996, "more than 99"),
        (1.0, "all 100"),
        (0.0, "none"),
        (0.004, "fewer than 1"),
    ],
)
def test_out_of_100_never_rounds_a_miss_away(fraction, words):
    assert wording.out_of_100(fraction) == words


# --- maps and problems ---------------------------------------------------------------------------


def test_every_saliency_method_has_plain_words():
    assert set(wording.MAP_NAMES) == set(wording.MAP_DESCRIPTIONS) == set(wording.MAP_READINGS) == set(saliency.METHODS)
    assert "Integrated" not in wording.MAP_NAMES["integrated_gradients"]
    assert wording.map_caption("gradcam", blank=False, from_difference=False) == (
        "Areas that raised the score: brighter = the areas that pushed the score up most."
    )
    assert "dark everywhere" in wording.map_caption("saliency", blank=True, from_difference=False)
    assert "difference between the model's two scores" in wording.map_caption("saliency", blank=False, from_difference=True)


def test_a_map_of_a_photo_far_below_the_line_says_its_bright_parts_are_no_reason_to_flag_it():
    far = wording.below_line_note(0.003, 0.855)
    assert far.startswith("This photo scored only 0.3%, far below the flagging line of 85.5%.")
    assert "scaled to its own photo" in far and "not a reason to flag it" in far
    near = wording.below_line_note(0.6, 0.855)
    assert near.startswith("This photo scored 60%, below the flagging line of 85.5%") and "far below" not in near
    assert wording.below_line_note(0.9, 0.855) == wording.below_line_note(0.855, 0.855) == "", "a flagged photo's map needs no note"
    verdict = wording.verdict_sentence(0.50695, 0.507, "captive")  # "score 50.695%, below the flagging line of 50.7%"
    assert verdict.split("score ")[1] in wording.below_line_note(0.50695, 0.507), "the verdict's own decimals"


def reason(path) -> str:
    with pytest.raises(ImageError) as caught:
        open_image(path)
    return caught.value.reason


def test_unreadable_files_are_explained_without_library_names(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    photo = write_image(tmp_path / "photo.jpg", seed=1, size=(200, 150)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(photo[: len(photo) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    reasons = {name: reason(tmp_path / name) for name in ("broken.jpg", "cut.jpg", "empty.jpg")}
    assert {name: wording.problem_text(why) for name, why in reasons.items()} == {
        "broken.jpg": "not a photo this page can read (a damaged file, or not a JPEG, PNG or WebP photo)",
        "cut.jpg": "the photo is damaged or cut short",
        "empty.jpg": "empty file",
    }
    assert wording.problem_summary(reasons["broken.jpg"]) == "not a photo this page can read", "short enough for a table cell"
    assert wording.problem_summary(reasons["cut.jpg"]) == "the photo is damaged or cut short"


def test_a_photo_over_the_pixel_limit_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("WILDVISION_MAX_IMAGE_PIXELS", "100")
    path = write_image(tmp_path / "big.png", seed=2, size=(20, 20))
    assert wording.problem_text(reason(path)) == "the photo is too large (too many pixels) to check safely"


def test_advice_is_worded_for_each_place_and_a_code_this_version_does_not_know_leaves_the_message_alone():
    for code, words in wording.HINTS.items():
        assert set(words) == set(wording.PLACES), code
        assert not re.search(r"(^|\s)--\w", words["page"]), words["page"]  # a page never tells anyone to pass a flag
    assert wording.with_hint("cancelled by the user", "resume", "page") == "cancelled by the user; Resume continues it"
    assert wording.with_hint("cancelled by the user", "resume", "cli") == "cancelled by the user; `python -m wildvision resume RUN` continues it"
    assert wording.with_hint("it failed", "a_newer_code", "page") == "it failed"
    assert wording.with_hint(None, None, "page") == ""
    with pytest.raises(ValueError, match="unknown place"):
        wording.hint_text("resume", "terminal")
