"""Plain words for people who check flagged photos and have no machine-learning background.

The Predict page (and anything else that talks to such a person) builds its sentences here, so that the words
can be tested on their own and can never contradict the numbers beside them:

- a score and the flagging line (the model's decision threshold) are always percentages, with just enough
  decimals that the shown numbers tell the verdict the same way the exact ones do (never "50% ... at or
  above 51%");
- how far to trust a model is said as "of every 100 photos it flagged, about N really were ...", from the
  positive class's precision and recall at the model's threshold, not as an F-score;
- saliency methods are named by what their maps show, not by their papers' names.

It also keeps the advice that ends an error or a run's status message in the words of each place that shows it
(HINTS): the message itself says only what happened, and carries a reason code the command line and the pages
each turn into their own words, so that a page never tells anyone to pass a command-line flag.
"""

from __future__ import annotations

import math
import unicodedata

MAX_DECIMALS = 4  # most percent decimals shown: scores are float32, so finer differences are noise

# What each stored test set is, for a person deciding how far to trust a flag. Others are named as they are.
TEST_SET_WORDS: dict[str, str] = {
    "test_in": "held-back photos from its own training folder",
    "test_out_pet": "photos from other websites, among them everyday photos of pets",
    "test_out_nopet": "photos from other websites, with no animals in the everyday ones",
}
# what a training folder holds, as the Train and Data pages and the command line's help say it (data.py accepts any
# negative folder name, and the Review page's export writes not_captive/)
CLASS_FOLDERS = "captive/ for the photos to flag, any other sub-folder (wild/, not_captive/, ...) for the rest; background/ counts with background images"
IN_DISTRIBUTION = "test_in"
TRUST_CAVEAT = (
    "Expect it to do worse on photos unlike the ones it learnt from: in the paper, every model did. "
    "Treat a flag as a pointer for a person to check, never as proof."
)

# Saliency methods (keys of wildvision.explain.saliency.METHODS): a short name for captions and pickers, and one line
# on what the map shows. Grad-CAM comes first on the page: its regions are what a non-expert can read.
MAP_NAMES: dict[str, str] = {
    "gradcam": "Areas that raised the score",
    "saliency": "Pixels that move the score (the paper's method)",
    "smoothgrad": "A smoother pixel map (slower)",
    "integrated_gradients": "A steadier map (slower)",
}
MAP_DESCRIPTIONS: dict[str, str] = {
    "gradcam": "Coarse regions of the photo that pushed the score up (Grad-CAM). The easiest map to read.",
    "saliency": "How much each single pixel moves the score (plain gradients, as in the paper). Finer, but speckled.",
    "smoothgrad": "The pixel map averaged over many copies of the photo with a little noise added (SmoothGrad): less speckled, but slower.",
    "integrated_gradients": "The pixel map averaged over many dimmed copies of the photo (Integrated Gradients): less speckled, but it takes a while.",
}
# How to read each map: Grad-CAM keeps only what raised the score; the pixel maps show either direction.
MAP_READINGS: dict[str, str] = {
    "gradcam": "brighter = the areas that pushed the score up most",
    "saliency": "brighter = the pixels that move the score most, up or down",
    "smoothgrad": "brighter = the pixels that move the score most, up or down",
    "integrated_gradients": "brighter = the pixels that moved the score most, up or down",
}


def positive_words(positive_class: str) -> str:
    """The positive class as a person says it: "captive" is the paper's "captive / for sale"."""
    return "captive / for sale" if positive_class == "captive" else positive_class.replace("_", " ")


def label_words(label: str) -> str:
    """A decision's label as a button or a message says it: "Captive / for sale", "Not captive", "Unsure"."""
    return positive_words(label).capitalize()


def percent_text(percent: float) -> str:
    """A percentage already rounded to the decimals wanted, without trailing zeros: 83.0 -> "83%", 50.71 -> "50.71%"."""
    text = f"{percent:.{MAX_DECIMALS}f}".rstrip("0").rstrip(".")
    return ("0" if text == "-0" else text) + "%"


def line_text(line: float) -> str:
    """The flagging line (a probability) as the page's slider shows it: a percentage with one decimal at most."""
    return percent_text(round(line * 100, 1))


def shown_percents(score: float, line: float) -> tuple[float, float]:
    """Score and flagging line (probabilities) in percent, rounded so that the shown values order as the exact ones.

    One decimal where that already tells them apart; more where score and line round to the same value (0.50705
    against 0.507 shows as 50.71% and 50.7%). Rounding keeps order, so shown values that differ never contradict
    the verdict; equal ones are true for "at or above". A score below the line by less than MAX_DECIMALS decimals can
    tell apart is truncated instead, and kept at least one step below the line, so it still reads as below.
    """
    flagged = score >= line
    for decimals in range(1, MAX_DECIMALS + 1):
        shown_score, shown_line = round(score * 100, decimals), round(line * 100, decimals)
        if shown_score != shown_line:
            return shown_score, shown_line
    shown_line = round(line * 100, 1) if flagged else round(line * 100, MAX_DECIMALS)
    if flagged:
        return shown_line, shown_line
    step = 10**-MAX_DECIMALS
    shown_score = min(math.floor(score * 100 / step) * step, shown_line - step)
    return round(shown_score, MAX_DECIMALS), shown_line


def verdict_sentence(score: float, line: float, positive_class: str) -> str:
    """What the model says about one photo and why: the score against the flagging line, never contradicting it.

    e.g. "Flagged as captive / for sale: score 91.2%, at or above the flagging line of 85.5%", or
    "Not flagged: score 83%, below the flagging line of 85.5%".
    """
    shown_score, shown_line = shown_percents(score, line)
    if score >= line:
        return f"Flagged as {positive_words(positive_class)}: score {percent_text(shown_score)}, at or above the flagging line of {percent_text(shown_line)}"
    return f"Not flagged: score {percent_text(shown_score)}, below the flagging line of {percent_text(shown_line)}"


def flag_word(score: float, line: float) -> str:
    """The verdict alone, for a table cell beside the score: "Flagged" at or above the line, else "Not flagged"."""
    return "Flagged" if score >= line else "Not flagged"


def short_verdict(score: float, line: float) -> str:
    """The verdict for a caption, e.g. "Flagged (91.2%)", with the same decimals as the sentence."""
    shown_score, _ = shown_percents(score, line)
    return f"{flag_word(score, line)} ({percent_text(shown_score)})"


def out_of_100(fraction: float) -> str:
    """A share as "about N" of every 100, never rounding a miss away: 0.996 is "more than 99", not "100"."""
    if fraction >= 1:
        return "all 100"
    if fraction <= 0:
        return "none"
    count = round(fraction * 100)
    if count >= 100:
        return "more than 99"
    if count < 1:
        return "fewer than 1"
    return f"about {count}"


UNLIKE_TRAINING = "This photo is unlike anything the model was trained on: treat its score with caution."
UNLIKE_TRAINING_SHORT = "Unlike the training photos"
UNLIKE_TRAINING_HOW = (
    "A photo counts as unlike the training photos when its features lie further from them than those of 95 in 100 of "
    "the model's own test photos; scores of such photos are less reliable."
)
NO_TRUST_NUMBERS = "No test results at its flagging line are stored with this model."


def trust_sentence(test_set: str, precision: float, recall: float, positive_class: str) -> str:
    """How the model did on one stored test set at its own flagging line, as a person checking flags needs it.

    `precision` and `recall` are the positive class's at the threshold: precision says how many flags are worth a
    look, recall how many real cases it finds. catalog.ModelRecord.trust puts them in order.
    """
    where = TEST_SET_WORDS.get(test_set, f"the test photos “{test_set}”")
    positive = positive_words(positive_class)
    if recall <= 0:
        text = f"On {where}, it flagged none of the photos that really were {positive}."
    else:
        text = (
            f"On {where}: of every 100 photos it flagged, {out_of_100(precision)} really were {positive}; "
            f"of every 100 that were, it found {out_of_100(recall)}."
        )
    if test_set == IN_DISTRIBUTION:
        text += " (Optimistic: these photos also helped choose the model.)"
    return text


def map_caption(method: str, blank: bool, from_difference: bool) -> str:
    """What a saliency map shows, under the map; `from_difference` when it was made from the two scores' difference."""
    if blank:
        return "No part of this photo changed the model's score, so the map is dark everywhere."
    text = f"{MAP_NAMES[method]}: {MAP_READINGS[method]}."
    if from_difference:
        text += " (Made from the difference between the model's two scores: its 'captive' score is at its floor for this photo.)"
    return text


LOW_SCORE = 0.10  # below this (and below the line) a score is far below the line: its map shows the little it rests on


def below_line_note(score: float, line: float) -> str:
    """What the map of a photo that was not flagged shows, after its caption; "" for a flagged photo.

    Every map is scaled to its own photo, so the map of a photo scored 0% looks as bright as a flagged one's, and a
    reader takes its bright parts for a reason to flag it unless told otherwise.
    """
    if score >= line:
        return ""
    shown_score, shown_line = (percent_text(value) for value in shown_percents(score, line))
    if score < LOW_SCORE:
        return (
            f"This photo scored only {shown_score}, far below the flagging line of {shown_line}. Each map is scaled to its own "
            "photo, so it looks as bright here as on a flagged photo: the bright parts are the little the score rests on, "
            "not a reason to flag it."
        )
    return (
        f"This photo scored {shown_score}, below the flagging line of {shown_line}: the bright parts are what its score rests on, but it stayed below the line."
    )


def problem_text(reason: str) -> str:
    """Why a file could not be used, in plain words (wildvision.images' reasons name the Pillow library).

    Its first part, before any " (", is a summary short enough for a table cell (see problem_summary).
    """
    if reason.startswith("not an image Pillow can read"):
        return "not a photo this page can read (a damaged file, or not a JPEG, PNG or WebP photo)"
    if reason.startswith("corrupt or truncated image"):
        return "the photo is damaged or cut short"
    if reason.startswith("too many pixels") or "pixels is over the limit" in reason:
        return "the photo is too large (too many pixels) to check safely"
    return reason


def problem_summary(reason: str) -> str:
    """The part of problem_text(reason) that fits a table cell; the full text belongs in a list beside the table."""
    return problem_text(reason).split(" (")[0]


# The Train page's Pretrained weights choice for a file of one's own (the page names its radio option with this).
LOCAL_WEIGHTS = "A local state dict file"
# Advice by reason code, as each place words it: "cli" names the command line's subcommands and options, "page"
# the dashboard's fields and buttons. Exceptions carry the code as their `hint` attribute and status.json as its
# `hint` field; their text is the neutral part (what happened), which reads the same everywhere.
HINTS: dict[str, dict[str, str]] = {
    "offline_weights": {
        "cli": "on a machine without internet pass a local ImageNet state dict with --weights PATH (e.g. ../shared/weights/*.pth)",
        "page": f"without internet, start a new run with '{LOCAL_WEIGHTS}' under Pretrained weights (e.g. a file in shared/weights/)",
    },
    "no_cuda": {"cli": "use --device cpu (or auto)", "page": "start a new run with Device auto or cpu"},
    "resume": {"cli": "`python -m wildvision resume RUN` continues it", "page": "Resume continues it"},
}
PLACES = ("cli", "page")


def hint_text(code: str | None, where: str) -> str:
    """The advice for a reason code in the words of `where` ("cli" or "page"); "" for None or a code this version
    does not know (a run folder written by a newer one), so that the message is shown on its own."""
    if where not in PLACES:
        raise ValueError(f"unknown place {where!r}; choose one of: {', '.join(PLACES)}")
    return HINTS.get(code, {}).get(where, "") if code else ""


def with_hint(message: str | None, code: str | None, where: str) -> str:
    """A message followed by its advice in the words of `where`: "what happened; what to do".

    A run folder written before reason codes existed has no code, and its message is shown as it is."""
    advice = hint_text(code, where)
    return "; ".join(part for part in (message, advice) if part)


def error_text(error: BaseException, where: str) -> str:
    """An exception's message with the advice its `hint` code (if any) gives, in the words of `where`."""
    return with_hint(str(error), getattr(error, "hint", None), where)


def plain_name(name: str) -> str:
    """A file name (or any text from outside) as one safe line of plain text: bytes that were not UTF-8 (held as
    surrogates, os.fsdecode) shown as \\xe9, and line breaks, other control characters and bidirectional overrides
    (U+202E turns "gpj.exe" into "exe.jpg" on screen) shown as escapes, so a name can neither forge lines nor
    disguise itself. Pages still show the result as plain text (or escaped Markdown), never as markup."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(
        repr(character)[1:-1] if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp") and character != " " else character for character in text
    )
