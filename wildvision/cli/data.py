"""`data check` and `data wordnet-filter`: image folders before training on them."""

from __future__ import annotations

import argparse
from collections import Counter

from wildvision import datacheck, photos, wordnet_filter
from wildvision.cli.options import test_folder


def cmd_wordnet_filter(args: argparse.Namespace) -> int:
    """Build the pet-free test folder and print what was kept and why the rest was dropped."""
    animal_words = wordnet_filter.AnimalWords(wordnet_filter.load_wordnet())
    decisions = wordnet_filter.decide(wordnet_filter.image_files(args.images_dir), wordnet_filter.read_captions(args.captions), animal_words)
    if not decisions:
        raise ValueError(f"{args.images_dir} holds no image files (.jpg, .png, ...)")
    if not any(decision.captioned for decision in decisions):
        raise ValueError(
            f"no image in {args.images_dir} is named in {args.captions}'s image column (e.g. {decisions[0].image.name}); is it their captions file?"
        )
    dropped_csv = wordnet_filter.write_output(decisions, args.out)
    kept = sum(decision.keep for decision in decisions)
    uncaptioned = sum(not decision.captioned for decision in decisions)
    counts = Counter(word for decision in decisions for word in decision.words)
    print(f"kept {kept} of {len(decisions)} images as links in {args.out} (WordNet {animal_words.wordnet.get_version()})")
    print(
        f"dropped {len(decisions) - kept}: {len(decisions) - kept - uncaptioned} whose captions name an animal, {uncaptioned} without a caption; list: {dropped_csv}"
    )
    if counts:
        print("words that dropped most: " + ", ".join(f"{word} {count}" for word, count in counts.most_common(10)))
    return 0


def register(sub) -> None:
    """The `data` command and its subcommands."""
    p = sub.add_parser("data", help="check a dataset, or build a pet-free test set", description="Work on image folders before training on them.")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data_sub.add_parser(
        "check",
        help="find unreadable images, duplicates, near-duplicates and label conflicts",
        description="Per class folder: images, unreadable files, sizes and balance; exact duplicates (SHA-256) and near-duplicates "
        f"(perceptual hash, pHash within {photos.PHASH_THRESHOLD} of 64 bits) within the data, across its class folders and "
        "across the test sets; label conflicts (one photo under two classes). Every finding names its files. "
        "Exit code 0: nothing found; 1: findings; 2: a folder cannot be used.",
    )
    p.add_argument("folders", nargs="+", metavar="DIR", help="data folders, each with one sub-folder per class (e.g. ../shared/demo-data/train)")
    p.add_argument("--test", action="append", type=test_folder, default=[], metavar="[NAME=]DIR", help="a test set to check against the data; repeat for more")
    p.add_argument("--positive", default="captive", help="the positive class folder (default: captive)")
    p.set_defaults(func=lambda args: datacheck.run_check(args.folders, args.test, args.positive))
    p = data_sub.add_parser(
        "wordnet-filter",
        help="keep the captioned photos whose captions name no animal (the paper's test_out_nopet)",
        description="Link into --out every photo of IMAGES_DIR whose captions name no noun under WordNet's animal.n.01 "
        "(people excluded), as the paper built test_out_nopet, and list the dropped ones with the words that matched. "
        "Works offline with Debian's WordNet (apt-get install wordnet-base).",
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of captioned photos, e.g. Flickr8k's (only files directly in it)")
    p.add_argument("--captions", required=True, metavar="CSV", help="captions CSV with the columns image,caption (image = file name in IMAGES_DIR)")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help=f"new or empty folder for links to the kept photos and {wordnet_filter.DROPPED_CSV} (a folder this command made earlier is refreshed)",
    )

    p.set_defaults(func=cmd_wordnet_filter)
