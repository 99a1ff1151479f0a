"""The transfer set for distilling MiniLM into a small student (docs/text.md, issue 15):
Debian's fortunes quotes split 90/10 with a fixed seed, and, as extra unlabelled text, the
glosses and example phrases of WordNet 3.0 (Debian's `wordnet-base`, 1:3.0-37: offline and
versioned). Writes

    OUT/train/fortunes   the training quotes, `%` lines between them
    OUT/train/wordnet    WordNet's glosses and examples of four or more words, `%` lines between
    OUT/held-out         the held-out quotes, `%` lines between them

for `distill distill --data OUT/train --test-data OUT/held-out --text-separator %`: every
quote of OUT/held-out is held out, everything in OUT/train trains. Quotes are read as
scripts/fortunes.py reads them (the rule Distill's reader follows); a quote that holds a line
of only `%` cannot occur. Usage:

    apt-get install wordnet-base fortunes
    python3 scripts/text_transfer_set.py OUT [--no-wordnet]
"""
import argparse
import os
import random

from fortunes import FOLDER, files, quotes

WORDNET = "/usr/share/wordnet"


def wordnet_phrases(folder=WORDNET):
    """Each synset's gloss split at ';' into its definition and examples (quotes stripped),
    kept when four or more words, in file order, without repeats."""
    seen, phrases = set(), []
    for part in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(folder, "data." + part), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:  # the licence header, or no gloss
                    continue
                for piece in line.split("|", 1)[1].split(";"):
                    phrase = piece.strip().strip('"').strip()
                    if len(phrase.split()) >= 4 and phrase not in seen:
                        seen.add(phrase)
                        phrases.append(phrase)
    return phrases


def write(path, records):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n%\n".join(records) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--no-wordnet", action="store_true", help="fortunes only")
    parser.add_argument("--held-out", type=float, default=0.1, help="fraction of the quotes held out (default 0.1)")
    args = parser.parse_args()
    everything = [q for name in files() for q in quotes(os.path.join(FOLDER, name))]
    order = list(range(len(everything)))
    random.Random(0).shuffle(order)
    held = int(round(len(everything) * args.held_out))
    os.makedirs(os.path.join(args.out, "train"), exist_ok=True)
    write(os.path.join(args.out, "held-out"), [everything[i] for i in sorted(order[:held])])
    write(os.path.join(args.out, "train", "fortunes"), [everything[i] for i in sorted(order[held:])])
    extra = [] if args.no_wordnet else wordnet_phrases()
    if extra:
        write(os.path.join(args.out, "train", "wordnet"), extra)
    print(f"{len(everything) - held} training quotes, {held} held out, {len(extra)} WordNet phrases")


if __name__ == "__main__":
    main()
