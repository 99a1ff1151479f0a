"""The transfer set for distilling MiniLM into a small student (docs/text.md, issue 15):
Debian's fortunes quotes split 90/10 with a fixed seed, and, as extra unlabelled text, the
glosses and example phrases of WordNet 3.0 (Debian's `wordnet-base`, 1:3.0-37: offline and
versioned). Writes

    OUT/train/fortunes   the training quotes, `%` lines between them
    OUT/train/wordnet    WordNet's glosses and examples of four or more words, `%` lines between
    OUT/held-out         the held-out quotes, `%` lines between them

and, with `--augment K`, K variants of every training quote (never of a held-out one):

    OUT/train/augmented  each a span of a quote's words (40-90% of them), the quote with a
                         fifth of its words dropped, or the start of one quote joined to the
                         end of another (the operation and its cuts drawn with seed 0)

with `--gcide N`, N literary citations from Webster's 1913 (Debian's `dict-gcide`):

    OUT/train/gcide      one citation a record (see `gcide_citations`)

and, with `--swap K`, K more variants of every training quote:

    OUT/train/swapped    the quote with about a quarter of its words of four letters or more
                         replaced by one of their 8 nearest words in MiniLM's input word
                         embeddings (TinyBERT's word swaps, with the teacher's own vectors in
                         place of GloVe; drawn with seed 1)

with `--extra ROOT`, the quote-like texts of four more Debian packages unpacked under ROOT
(see `extra_texts`; near copies of held-out quotes left out, as from the citations):

    OUT/train/extra      anarchism quotes, BOFH excuses, and the paragraphs of the Devil's
                         Dictionary and the Jargon File

with `--more`, the texts of three more Debian packages, installed (see `more_texts`; near copies
of held-out quotes left out):

    OUT/train/more       the King James Bible's verses, FOLDOC's paragraphs, tfortune's epigrams

with `--markov N`, N texts from a word-level Markov chain over the training texts above
(quotes, citations, extra and more texts; see `markov_texts`):

    OUT/train/markov     one generated text a record

with `--books ROOT`, the sentences of seven novels from two Debian packages unpacked under
ROOT (see `book_texts`; not in the Markov chain's texts, so adding them leaves a set's Markov
texts as they were; near copies of held-out quotes left out):

    OUT/train/books      Jane Austen's six novels and Moby Dick, a quote's length of
                         consecutive sentences a record

and with `--keep-quotes N` only N of the training quotes (the held-out ones unchanged),

for `distill distill --data OUT/train --test-data OUT/held-out --text-separator %`: every
quote of OUT/held-out is held out, everything in OUT/train trains. Quotes are read as
scripts/fortunes.py reads them (the rule Distill's reader follows); a quote that holds a line
of only `%` cannot occur. Usage:

    apt-get install wordnet-base fortunes
    python3 scripts/text_transfer_set.py OUT [--no-wordnet] [--augment K] [--swap K] [--gcide N] [--extra ROOT] [--more] [--markov N] [--books ROOT] [--keep-quotes N]
"""
import argparse
import os
import random

from fortunes import FOLDER, files, quotes

WORDNET = "/usr/share/wordnet"
TFORTUNES = "/usr/share/games/tfortunes/epigrams/en.tfortunes"


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


def augmented(quotes, k, seed=0):
    """`k` variants of each quote (TinyBERT's idea of growing the transfer set: the teacher
    labels whatever text it is shown, so new inputs near the real ones are new examples).
    Words are split at white space and joined by one space; variants under four words,
    repeats and copies of a quote are left out."""
    rng = random.Random(seed)
    words = [q.split() for q in quotes]
    seen, variants = set(quotes), []
    for index, w in enumerate(words):
        for _ in range(k):
            operation = rng.randrange(3)
            if operation == 0:  # a span
                length = max(1, int(round(len(w) * rng.uniform(0.4, 0.9))))
                start = rng.randrange(len(w) - length + 1)
                text = w[start:start + length]
            elif operation == 1:  # a fifth of the words dropped
                text = [word for word in w if rng.random() >= 0.2]
            else:  # the start of this quote, the end of another
                other = words[rng.randrange(len(words))]
                text = w[:rng.randint(1, max(1, len(w) - 1))] + other[rng.randint(1, max(1, len(other) - 1)):]
            text = " ".join(text)
            if len(text.split()) >= 4 and text not in seen:
                seen.add(text)
                variants.append(text)
    return variants


def markov_texts(texts, count, seed=3):
    """`count` new texts drawn from a word-level Markov chain over `texts` (TinyBERT's growing
    of the transfer set taken further: new word sequences that no source holds, in the
    sources' phrasing). Words are split at spaces, a line break is a word of its own; each next
    word follows the two before it (as in some source text) with probability 0.7 and only the
    one before it otherwise, so that texts change source mid-sentence more often than a
    splice does; a text ends where a source text ends, or at twice the length of a source
    text drawn at random. Texts under four words, repeats and copies of a source text are
    left out."""
    rng = random.Random(seed)
    begin, end = "\u0002", "\u0003"
    two, one, lengths = {}, {}, []
    for text in texts:
        words = [w for w in text.replace("\n", " \n ").split(" ") if w]
        lengths.append(len(words))
        sequence = [begin, begin] + words + [end]
        for a, b, c in zip(sequence, sequence[1:], sequence[2:]):
            two.setdefault((a, b), []).append(c)
            one.setdefault(b, []).append(c)
    known, made = set(texts), []
    attempts = 0
    while len(made) < count and attempts < 20 * count:
        attempts += 1
        limit, words, a, b = 2 * rng.choice(lengths), [], begin, begin
        while len(words) < limit:
            choices = two[(a, b)] if a == begin or rng.random() < 0.7 else one[b]
            c = rng.choice(choices)
            if c == end:
                break
            words.append(c)
            a, b = b, c
        text = "\n".join(" ".join(line.split()) for line in " ".join(words).split("\n")).strip()
        if len(text.split()) >= 4 and text not in known:
            known.add(text)
            made.append(text)
    return made


def neighbour_table(model, count=8):
    """For each whole-word, alphabetic token of the teacher's vocabulary (no `##` pieces, no
    [unused] or special tokens), its `count` nearest such tokens by the cosine of the
    teacher's input word embeddings: the stand-in for TinyBERT's GloVe neighbours."""
    import json
    import numpy as np
    from safetensors.numpy import load_file
    vocabulary = json.load(open(os.path.join(model, "tokenizer.json"), encoding="utf-8"))["model"]["vocab"]
    table = load_file(os.path.join(model, "model.safetensors"))
    weights = next(v for k, v in table.items() if k.endswith("word_embeddings.weight")).astype(np.float32)
    words = sorted((i, w) for w, i in vocabulary.items() if w.isalpha() and w.isascii() and len(w) > 1)
    ids = np.array([i for i, _ in words])
    vectors = weights[ids] / np.linalg.norm(weights[ids], axis=1, keepdims=True)
    neighbours = {}
    for start in range(0, len(ids), 2048):
        similarity = vectors[start:start + 2048] @ vectors.T
        for row, index in enumerate(range(start, min(start + 2048, len(ids)))):
            similarity[row, index] = -2  # not itself
        nearest = np.argsort(-similarity, axis=1)[:, :count]
        for row, index in enumerate(range(start, min(start + 2048, len(ids)))):
            neighbours[words[index][1]] = [words[j][1] for j in nearest[row]]
    return neighbours


def swapped(quotes, k, neighbours, rate=0.25, seed=1):
    """`k` variants of each quote with about `rate` of its words replaced by one of their
    neighbours (words of four letters or more: swapping "the" or "of" breaks a sentence; a word keeps
    its punctuation and first capital; words the table lacks stay)."""
    rng = random.Random(seed)
    seen, variants = set(quotes), []
    for quote in quotes:
        words = quote.split()
        for _ in range(k):
            out = []
            for word in words:
                core = word.strip(".,;:!?\"'()[]-")
                options = neighbours.get(core.lower())
                if options and len(core) >= 4 and rng.random() < rate:
                    new = rng.choice(options)
                    new = new.capitalize() if core[:1].isupper() else new
                    word = word.replace(core, new, 1)
                out.append(word)
            text = " ".join(out)
            if len(out) >= 4 and text not in seen:
                seen.add(text)
                variants.append(text)
    return variants


GCIDE = "/usr/share/dictd/gcide.dict.dz"


def gcide_citations(path=GCIDE):
    """The literary citations of the GNU Collaborative International Dictionary of English
    (Debian's `dict-gcide`, 0.48.5+nmu2: Webster's 1913 with its quotations from Shakespeare, Milton,
    Dryden, ...): each run of lines indented by 12 spaces or more, joined by one space, braces
    (cross-reference markup) dropped; four or more words, without repeats, in file order."""
    import gzip
    import re
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    seen, citations, current = set(), [], []
    for line in lines + [""]:
        if line.startswith(" " * 12) and line.strip():
            current.append(line.strip())
            continue
        if current:
            text = re.sub(r"\s+", " ", re.sub(r"[{}]", "", " ".join(current))).strip()
            current = []
            if len(text.split()) >= 4 and text not in seen:
                seen.add(text)
                citations.append(text)
    return citations


EXTRA_PACKAGES = "fortune-anarchism fortunes-bofh-excuses dict-devil dict-jargon"


def extra_texts(root):
    """Quote-like English text from Debian packages unpacked (not installed: installing them
    would add files to the fortunes folder the split is drawn from) under `root`, as by
    `apt-get download fortune-anarchism fortunes-bofh-excuses dict-devil dict-jargon` and
    `dpkg-deb -x PACKAGE.deb root` (bookworm: 1.8.0-1, 1.2-3, 1.0-13.1, 4.4.7-3.1): the
    anarchism quotes and BOFH excuses, one a record; and each paragraph of four to 150 words
    of the Devil's Dictionary's and the Jargon File's entries (the headword line dropped,
    lines joined, braces dropped), without repeats, in file order."""
    texts = []
    for name in ("anarchism", "bofh-excuses"):
        texts += quotes(os.path.join(root, "usr/share/games/fortunes", name))
    for name in ("devil", "jargon"):
        texts += dictd_paragraphs(os.path.join(root, "usr/share/dictd"), name)
    return unique(texts)


def unique(texts):
    """`texts` without repeats, in order."""
    seen, kept = set(), []
    for text in texts:
        if text not in seen:
            seen.add(text)
            kept.append(text)
    return kept


def dictd_paragraphs(folder, name):
    """Each paragraph of four to 150 words of the entries of the dictd database `name` in
    `folder` (NAME.index, NAME.dict.dz): the headword line dropped, lines joined, braces
    (cross-reference markup) dropped, in file order."""
    import gzip
    import re
    digits = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
    number = lambda code: sum(digits[c] * 64 ** i for i, c in enumerate(reversed(code)))
    with gzip.open(os.path.join(folder, name + ".dict.dz"), "rb") as f:
        body = f.read()
    with open(os.path.join(folder, name + ".index"), encoding="utf-8") as f:
        entries = [line.rstrip("\n").split("\t") for line in f]
    texts = []
    for headword, offset, length in entries:
        if headword.startswith("00database"):
            continue
        entry = body[number(offset):number(offset) + number(length)].decode("utf-8", errors="replace")
        for paragraph in re.split(r"\n\s*\n", entry.split("\n", 1)[1] if "\n" in entry else ""):
            text = re.sub(r"\s+", " ", re.sub(r"[{}]", "", paragraph)).strip()
            if 4 <= len(text.split()) <= 150:
                texts.append(text)
    return texts


MORE_PACKAGES = "bible-kjv dict-foldoc tfortunes"


def more_texts():
    """More English text from installed Debian packages (`apt-get install bible-kjv dict-foldoc
    tfortunes`; bookworm: 4.38 with bible-kjv-text 4.38, 20230119-1, 1.0.1-1): the verses of
    the King James Bible of four words or more, one a record (as `bible` prints them from
    Genesis 1:1 to Revelation 22:21); the paragraphs of FOLDOC, the Free On-line Dictionary of
    Computing (as the Jargon File's in `extra_texts`); and tfortune's English epigrams, one a
    record (the `---- tags` line between them dropped). Without repeats, in that order."""
    import re
    import subprocess
    printed = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], capture_output=True, text=True, check=True).stdout
    texts = [m.group(1).strip() for m in re.finditer(r"^ +\d+ (.+)$", printed, re.M) if len(m.group(1).split()) >= 4]
    texts += dictd_paragraphs("/usr/share/dictd", "foldoc")
    with open(TFORTUNES, encoding="utf-8", errors="replace") as f:
        records = re.split(r"^---- .*$", f.read(), flags=re.M)
    texts += [r.strip() for r in records if len(r.split()) >= 4]
    return unique(texts)


BOOK_PACKAGES = "r-cran-janeaustenr r-cran-tokenizers"


def r_lazy_data(folder):
    """The objects of an R package's lazy-load data base (FOLDER/Rdata.rdx, an RDS index of
    [offset, length] by name; FOLDER/Rdata.rdb, each object a 4-byte length and a zlib stream
    of R's serialisation), read with the `rdata` package (pip install rdata), by name."""
    import warnings
    import zlib
    import rdata
    warnings.filterwarnings("ignore", message="Unknown file type")  # rdata's note on reading a bare serialisation
    index = rdata.read_rds(os.path.join(folder, "Rdata.rdx"))
    with open(os.path.join(folder, "Rdata.rdb"), "rb") as f:
        blob = f.read()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        offset, length = int(offset), int(length)
        objects[name] = rdata.conversion.convert(rdata.parser.parse_data(zlib.decompress(blob[offset + 4:offset + length])))
    return objects


def book_texts(root, words=40):
    """The sentences of Jane Austen's six novels (R's janeaustenr data, Debian's
    `r-cran-janeaustenr` 1.0.0-1: a vector of lines a novel) and of Moby Dick (R's tokenizers
    data, `r-cran-tokenizers` 0.3.0-1: Project Gutenberg's e-book 2701, its licence cut off),
    unpacked (`apt-get download r-cran-janeaustenr r-cran-tokenizers`, `dpkg-deb -x
    PACKAGE.deb root`; R is not needed) under `root`. Paragraphs are split into sentences
    after . ! or ? (a closing quotation mark kept) before a capital or an opening mark (not
    after Mr., Mrs., Dr., St. or Messrs.), and
    consecutive sentences of a paragraph are joined while they stay within `words` words (a
    long quote's length); texts of fewer than four words are dropped. Without repeats, in
    book order."""
    import re
    library = os.path.join(root, "usr/lib/R/site-library")
    paragraphs = []
    for lines in r_lazy_data(os.path.join(library, "janeaustenr/data")).values():
        current = []
        for line in list(lines) + [""]:
            if line.strip():
                current.append(line.strip())
            elif current:
                paragraphs.append(" ".join(current))
                current = []
    book = str(r_lazy_data(os.path.join(library, "tokenizers/data"))["mobydick"][0]).replace("\r\n", "\n")
    book = book[book.index("*** START"):book.index("*** END")].split("\n", 1)[1]
    paragraphs += [" ".join(p.split()) for p in book.split("\n\n") if p.strip()]
    texts = []
    for paragraph in paragraphs:
        current = []
        sentences = []
        for piece in re.split(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"'A-Z])", paragraph):
            # A title's full stop (Mr. Knightley) ends no sentence.
            if sentences and re.search(r"\b(?:Mr|Mrs|Dr|St|Messrs)\.$", sentences[-1]):
                sentences[-1] += " " + piece
            else:
                sentences.append(piece)
        for sentence in sentences:
            if current and len(" ".join(current + [sentence]).split()) > words:
                texts.append(" ".join(current))
                current = []
            current.append(sentence.strip())
        if current:
            texts.append(" ".join(current))
    return unique([t for t in texts if len(t.split()) >= 4 and not re.match(r"(?i)chapter\b", t)])


def near_copies(texts, held_out):
    """The texts that repeat a held-out quote or contain one, or that one contains, compared as
    lower-case letters and digits only (texts of 30 or more of them): the same saying in another
    collection would otherwise teach the student a quote it is scored on."""
    import re
    key = lambda t: re.sub(r"[^a-z0-9]", "", t.lower())
    held = [key(q) for q in held_out]
    held = [h for h in held if len(h) >= 30]
    out = set()
    for i, text in enumerate(texts):
        k = key(text)
        if len(k) >= 30 and any(h in k or k in h for h in held):
            out.add(i)
    return out


def write(path, records):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n%\n".join(records) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--no-wordnet", action="store_true", help="fortunes only")
    parser.add_argument("--held-out", type=float, default=0.1, help="fraction of the quotes held out (default 0.1)")
    parser.add_argument("--augment", type=int, default=0, metavar="K", help="K variants of each training quote (default 0: none)")
    parser.add_argument("--swap", type=int, default=0, metavar="K",
                        help="K more variants of each training quote with a quarter of its words swapped for neighbours in MiniLM's word embeddings (default 0)")
    parser.add_argument("--gcide", type=int, default=0, metavar="N",
                        help="N of GCIDE's literary citations (apt-get install dict-gcide), drawn with seed 2; -1: all (default 0: none)")
    parser.add_argument("--keep-quotes", type=int, default=0, metavar="N",
                        help="train on N of the training quotes only, drawn with seed 7 and written in the order drawn (the held-out quotes stay the same)")
    parser.add_argument("--extra", metavar="ROOT",
                        help=f"add the quote-like texts of Debian's {EXTRA_PACKAGES}, unpacked under ROOT (see extra_texts)")
    parser.add_argument("--more", action="store_true",
                        help=f"add the King James Bible's verses, FOLDOC's paragraphs and tfortune's epigrams (apt-get install {MORE_PACKAGES}; see more_texts)")
    parser.add_argument("--markov", type=int, default=0, metavar="N",
                        help="N new texts from a word-level Markov chain over the training quotes and the other sources chosen (see markov_texts; default 0)")
    parser.add_argument("--books", metavar="ROOT",
                        help=f"add the sentences of Jane Austen's novels and Moby Dick from Debian's {BOOK_PACKAGES}, unpacked under ROOT (see book_texts; needs pip install rdata)")
    parser.add_argument("--teacher", default=os.path.expanduser("~/.cache/distill/all-minilm-l6-v2-0.1.2"),
                        help="with --swap: the teacher's folder (model.safetensors, tokenizer.json)")
    args = parser.parse_args()
    if args.extra:
        needed = [os.path.join(args.extra, "usr/share/games/fortunes", name) for name in ("anarchism", "bofh-excuses")]
        needed += [os.path.join(args.extra, "usr/share/dictd", name + ext) for name in ("devil", "jargon") for ext in (".dict.dz", ".index")]
        missing = [path for path in needed if not os.path.isfile(path)]
        if missing:
            parser.error(f"--extra {args.extra}: {missing[0]} is missing (apt-get download {EXTRA_PACKAGES}; dpkg-deb -x each .deb {args.extra})")
    if args.more:
        import shutil
        missing = [what for what, ok in (("bible (bible-kjv)", shutil.which("bible")), ("/usr/share/dictd/foldoc.index (dict-foldoc)", os.path.isfile("/usr/share/dictd/foldoc.index")),
                                         (f"{TFORTUNES} (tfortunes)", os.path.isfile(TFORTUNES))) if not ok]
        if missing:
            parser.error(f"--more: {missing[0]} is missing (apt-get install {MORE_PACKAGES})")
    if args.books:
        needed = [os.path.join(args.books, "usr/lib/R/site-library", name, "data", file) for name in ("janeaustenr", "tokenizers") for file in ("Rdata.rdx", "Rdata.rdb")]
        missing = [path for path in needed if not os.path.isfile(path)]
        if missing:
            parser.error(f"--books {args.books}: {missing[0]} is missing (apt-get download {BOOK_PACKAGES}; dpkg-deb -x each .deb {args.books})")
        try:
            import rdata  # noqa: F401
        except ImportError:
            parser.error("--books reads R's data files with the rdata package: pip install rdata")
    if args.markov < 0:
        parser.error(f"--markov {args.markov}: give a number of texts, 1 or more (0: none)")
    if args.keep_quotes < 0:
        parser.error(f"--keep-quotes {args.keep_quotes}: give a number of quotes, 1 or more (0: all)")
    everything = [q for name in files() for q in quotes(os.path.join(FOLDER, name))]
    order = list(range(len(everything)))
    random.Random(0).shuffle(order)
    held = int(round(len(everything) * args.held_out))
    os.makedirs(os.path.join(args.out, "train"), exist_ok=True)
    write(os.path.join(args.out, "held-out"), [everything[i] for i in sorted(order[:held])])
    training = [everything[i] for i in sorted(order[held:])]
    if args.keep_quotes > 0:
        random.Random(7).shuffle(training)
        training = training[:args.keep_quotes]
    write(os.path.join(args.out, "train", "fortunes"), training)
    variants = augmented(training, args.augment) if args.augment > 0 else []
    if variants:
        write(os.path.join(args.out, "train", "augmented"), variants)
    swaps = swapped(training, args.swap, neighbour_table(args.teacher)) if args.swap > 0 else []
    if swaps:
        write(os.path.join(args.out, "train", "swapped"), swaps)
    citations = gcide_citations() if args.gcide else []
    if args.gcide > 0:
        citations = random.Random(2).sample(citations, min(args.gcide, len(citations)))
    held_out = {everything[i] for i in order[:held]}
    dropped = []

    def kept(name, texts):
        """`texts` without near copies of held-out quotes (counted in `dropped`), written to
        OUT/train/NAME when any are left."""
        copies = near_copies(texts, held_out)
        dropped.append(len(copies))
        texts = [t for i, t in enumerate(texts) if i not in copies]
        if texts:
            write(os.path.join(args.out, "train", name), texts)
        return texts

    citations = kept("gcide", citations)
    others = kept("extra", extra_texts(args.extra) if args.extra else [])
    more = kept("more", more_texts() if args.more else [])
    chain = kept("markov", markov_texts(training + citations + others + more, args.markov) if args.markov > 0 else [])
    books = kept("books", book_texts(args.books) if args.books else [])
    extra = [] if args.no_wordnet else wordnet_phrases()
    if extra:
        write(os.path.join(args.out, "train", "wordnet"), extra)
    print(f"{len(everything) - held} training quotes, {held} held out, {len(extra)} WordNet phrases, {len(variants)} variants, "
          f"{len(swaps)} with words swapped, {len(citations)} GCIDE citations, {len(others)} texts of {EXTRA_PACKAGES}, {len(more)} of {MORE_PACKAGES}, {len(chain)} from the Markov chain, {len(books)} from the novels"
          + (f" ({sum(dropped)} near copies of held-out quotes left out)" if args.extra or args.gcide or args.more or args.markov or args.books else ""))


if __name__ == "__main__":
    main()
