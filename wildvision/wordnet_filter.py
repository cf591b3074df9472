"""The paper's test_out_nopet builder: keep only the photos none of whose captions names an animal.

Kulkarni & Di Minin (2022, section 2.2) made test_out_nopet from Flickr photos by excluding "all
images for which the description had a mention of the Wordnet class 'animal'", to measure how much
household pets in everyday photos fool the models. This module does that with WordNet 3.0:

- every word of every caption of an image is read as a noun and lemmatised by WordNet itself
  ("dogs" -> dog), and names an animal when its first (most frequent) noun sense is `animal.n.01`
  or a hyponym of it. Only the first sense: with any sense, colours ("blue" is also a butterfly),
  "kid" (a young goat) and "head" drop hundreds of pet-free photos. Words are not tagged by part of
  speech in context (nltk's tagger needs a model download), so an adjective whose noun reading is
  an animal counts too: "young" (any immature animal) is the most frequent match on Flickr8k.
- people are excluded. `person.n.01` sits under organism, not animal, so "man", "child" and
  "player" never match; but the first sense of "human" is `homo.n.02`, a hominid and so an animal,
  which this module counts as a person too.
- an image that no caption describes cannot be shown to be free of animals, so it is dropped.

On the demo data's 1,000 Flickr8k photos (../shared/demo-data/test_out_pet/other) this keeps
exactly the 440 in test_out_nopet/other. The paper's own counts (998 Flickr photos in
test_out_pet, 996 in test_out_nopet) cannot be checked: its captions and sample are not public.

WordNet is read offline from Debian's `wordnet-base` files (/usr/share/wordnet, or WordNet's own
WNSEARCHDIR variable) with nltk's reader; see `load_wordnet` for the two gaps it bridges.

The output folder holds links to the kept photos, never copies, and the user's files are never
moved or deleted: a folder is only reused when it holds nothing but links this module made.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wildvision import runs, spreadsheet
from wildvision.images import is_image_file

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader

WORDNET_DIR_ENV = "WNSEARCHDIR"  # WordNet's own variable for the folder of its database files
DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
DROPPED_CSV = "wordnet-dropped.csv"
LINKS_MANIFEST = ".wordnet-filter-links"  # the names of the links this module made, one per line
NO_CAPTION = "no caption"
# what a reused output folder may hold besides the links it lists (a .tmp is left by an interrupted write)
OWN_FILES = {LINKS_MANIFEST, DROPPED_CSV, LINKS_MANIFEST + ".tmp", DROPPED_CSV + ".tmp"}

# WordNet 3.0's lexicographer files in their numbered order, as its lexnames(5WN) manual page lists
# them; nltk's reader opens a `lexnames` file holding this list, which Debian does not ship.
LEXNAMES = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
]
_SYNTACTIC_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}  # the third column of lexnames


class WordNetMissingError(FileNotFoundError):
    """WordNet's database files are not on this machine; the message says what to install."""


def lexnames_text() -> str:
    """The content of WordNet 3.0's `lexnames` file: number, name and syntactic category per line."""
    return "".join(f"{index:02d}\t{name}\t{_SYNTACTIC_CATEGORY[name.split('.')[0]]}\n" for index, name in enumerate(LEXNAMES))


def wordnet_dir() -> Path:
    """Where WordNet's database files are: $WNSEARCHDIR if set, else Debian's wordnet-base folder."""
    return Path(os.environ.get(WORDNET_DIR_ENV) or DEBIAN_WORDNET_DIR)


def load_wordnet(folder: Path | None = None) -> WordNetCorpusReader:
    """nltk's WordNet reader on the database files in `folder` (default `wordnet_dir()`), offline, read once.

    Two gaps between Debian's files and nltk 3.10 are bridged without copying 28 MB anywhere:
    the `lexnames` file nltk opens is served from `LEXNAMES`, and the folder is added to
    `nltk.data.path`, the list of roots nltk's path checks allow reading from (they refuse any
    other folder, and links out of one). The reader's mapping to WordNet 3.0 for multilingual
    data is skipped: it needs nltk's own downloaded copy, and only English is read here.
    """
    return _load_wordnet(Path(folder or wordnet_dir()).resolve())


@functools.cache
def _load_wordnet(folder: Path) -> WordNetCorpusReader:
    import nltk  # here, not at the top: importing nltk takes seconds, which every other command would wait for
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    missing = [name for name in ("data.noun", "index.noun", "noun.exc") if not (folder / name).is_file()]
    if missing:
        raise WordNetMissingError(
            f"WordNet's database files are not in {folder} (missing {', '.join(missing)}); "
            f"install Debian's WordNet with `apt-get install wordnet-base`, or set {WORDNET_DIR_ENV} to a folder that holds WordNet 3.0's dict files"
        )

    class OfflineWordNet(WordNetCorpusReader):
        def open(self, file: str):
            return io.StringIO(lexnames_text()) if file == "lexnames" else super().open(file)

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))
    with warnings.catch_warnings():  # "multilingual functions are not available": none are used
        warnings.simplefilter("ignore", UserWarning)
        return OfflineWordNet(str(folder), None)


class AnimalWords:
    """Which words name an animal: the first noun sense is under `animal.n.01` and is not a person."""

    def __init__(self, wordnet: WordNetCorpusReader) -> None:
        self.wordnet = wordnet
        self.animal = wordnet.synset("animal.n.01")
        self.people = {wordnet.synset("person.n.01"), wordnet.synset("homo.n.02")}
        self._known: dict[str, bool] = {}  # captions repeat a few thousand words many times

    def names_animal(self, word: str) -> bool:
        word = word.lower()
        if word not in self._known:
            senses = self.wordnet.synsets(word, pos="n")
            ancestors = self._ancestors(senses[0]) if senses else set()
            self._known[word] = self.animal in ancestors and not ancestors & self.people
        return self._known[word]

    def in_text(self, text: str) -> list[str]:
        """The words of `text` (lower-cased, letters only) that name an animal, sorted, each once."""
        return sorted({word for word in re.findall(r"[a-z]+", text.lower()) if self.names_animal(word)})

    @staticmethod
    def _ancestors(synset: Synset) -> set[Synset]:
        return {synset, *synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}


@dataclass(frozen=True)
class Decision:
    """One image's fate: kept when it has captions and none names an animal."""

    image: Path
    words: tuple[str, ...]  # the caption words that name an animal
    captioned: bool

    @property
    def keep(self) -> bool:
        return self.captioned and not self.words

    @property
    def reason(self) -> str:
        return NO_CAPTION if not self.captioned else "caption names an animal" if self.words else ""


def read_captions(path: str | Path) -> dict[str, list[str]]:
    """Captions per image file name from a CSV with `image` and `caption` columns (one row per caption)."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        if not {"image", "caption"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path} needs the columns image,caption (found: {','.join(reader.fieldnames or ()) or 'none'})")
        captions: dict[str, list[str]] = defaultdict(list)
        for row in reader:
            captions[row["image"]].append(row["caption"] or "")
    return dict(captions)


def image_files(folder: str | Path) -> list[Path]:
    """The image files directly in `folder` (links followed), by name: captions are matched by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"image folder {folder} does not exist or is not a folder")
    return sorted(path for path in folder.iterdir() if is_image_file(path) and path.is_file())


def decide(images: Iterable[Path], captions: dict[str, list[str]], animal_words: AnimalWords) -> list[Decision]:
    """Keep or drop each image by the animal words in all its captions."""
    decisions = []
    for image in images:
        texts = captions.get(image.name, [])
        words = sorted({word for text in texts for word in animal_words.in_text(text)})
        decisions.append(Decision(image, tuple(words), captioned=bool(texts)))
    return decisions


def check_output_folder(out: Path) -> set[str]:
    """The names of the links an earlier run made in `out`, after checking that nothing else is there.

    A folder that does not exist or is empty is fine. Anything else is reused only if it holds
    this module's manifest and nothing but the links it lists and the dropped list: then
    replacing those links loses nothing of the user's.
    """
    if not out.exists() and not out.is_symlink():
        return set()
    if not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose a new --out folder")
    entries = {entry.name: entry for entry in out.iterdir()}
    if not entries:
        return set()
    manifest = out / LINKS_MANIFEST
    if not manifest.is_file():
        raise FileExistsError(f"{out} is not empty and was not made by the WordNet filter; choose a new or empty --out folder")
    made = set(manifest.read_text(encoding="utf-8").splitlines())
    foreign = sorted(name for name, entry in entries.items() if name not in OWN_FILES and not (name in made and entry.is_symlink()))
    if foreign:
        raise FileExistsError(f"{out} holds {len(foreign)} file(s) the WordNet filter did not make (e.g. {foreign[0]}); choose a new or empty --out folder")
    return made


def write_output(decisions: list[Decision], out: str | Path) -> Path:
    """Links to the kept images in `out` and the dropped list beside them; returns the list's path.

    Order matters for a run that is interrupted: the old links go first, then the manifest names
    the new ones before they are made, so the folder always passes `check_output_folder` again.
    """
    out = Path(out)
    made = check_output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in made:
        if (out / name).is_symlink():
            (out / name).unlink()
    kept = [decision.image for decision in decisions if decision.keep]
    runs.write_text_atomic(out / LINKS_MANIFEST, "".join(f"{image.name}\n" for image in kept))
    for image in kept:
        (out / image.name).symlink_to(image.absolute())
    dropped = ([decision.image.name, decision.reason, " ".join(decision.words)] for decision in decisions if not decision.keep)
    runs.write_text_atomic(out / DROPPED_CSV, spreadsheet.csv_text(["image", "reason", "words"], dropped))
    return out / DROPPED_CSV
