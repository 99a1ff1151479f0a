"""Debian's fortunes as quotes, by the rule Sources/Datasets/Text/TextFile.swift
(`TextFile.records`) follows: the data files are the files without an extension directly in
the folder (the .dat indexes, .u8 links and subfolders such as fortunes-off's off/ are
skipped); a file is read as UTF-8 and split at "\n" only (a "\r" stays in the quote); a quote
is the lines between two lines holding only `%`, joined by "\n"; empty or whitespace-only
quotes are dropped. Shared by scripts/generate_tokenizer_reference.py and
bench/peers/tokenizer_peer.py."""
import os

FOLDER = "/usr/share/games/fortunes"


def files(folder=FOLDER):
    """The data files' names, sorted."""
    return sorted(n for n in os.listdir(folder) if "." not in n and os.path.isfile(os.path.join(folder, n)))


def quotes(path):
    """The quotes of one fortunes file."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    current, found = [], []
    for line in text.split("\n"):
        if line == "%":
            found.append("\n".join(current))
            current = []
        else:
            current.append(line)
    found.append("\n".join(current))
    return [q for q in found if q.strip() != ""]
