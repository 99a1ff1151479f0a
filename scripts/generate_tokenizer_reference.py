#!/usr/bin/env python3
"""Regenerates the WordPiece tokenizer's references from Hugging Face's `tokenizers` package
(Tests/DatasetsTests/TokenizerTests.swift compares Distill's ids with them):

- Tests/DatasetsTests/Fixtures/fortunes-minilm-ids.jsonl.gz: the ids of every quote in
  Debian's `fortunes` (/usr/share/games/fortunes), one JSON line a quote:
  {"file": "art", "quote": 0, "scalars": 157, "ids": [101, ..., 102]}, with [CLS] and [SEP],
  without truncation or padding. `scalars` (the quote's length in Unicode scalars) lets the
  test say so when the installed fortunes differ from those the ids were made from.
- Tests/DatasetsTests/Fixtures/tokenizer-edge-cases.json: hand-picked texts (accents, CJK,
  punctuation, control characters, very long words, special tokens written in the text) and
  truncation and padding settings, each with ids, type ids, attention mask and tokens.

Both with all-MiniLM-L6-v2's tokenizer.json (scripts/fetch-minilm.sh fetches it):

    pip install tokenizers && scripts/fetch-minilm.sh && python3 scripts/generate_tokenizer_reference.py

Quotes: the data files are the files without an extension directly in the fortunes folder
(the .dat indexes and .u8 links are skipped, and so are subfolders: Debian's separate
`fortunes-off` package would add an off/ folder, and the reference must not depend on
whether it is installed). A file is read as UTF-8; a quote is the lines between two lines
that hold only `%`, joined by "\n"; quotes that are empty or only whitespace are skipped.
Sources/Datasets/Text/TextFile.swift (`TextFile.records`) splits them by the same rule.
"""
import gzip
import json
import os

from tokenizers import Tokenizer

from fortunes import FOLDER, files, quotes

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
out = os.path.join(root, "Tests", "DatasetsTests", "Fixtures")
cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
model = os.path.join(cache, "distill", "all-minilm-l6-v2-0.1.2")
fortunes = FOLDER


tokenizer = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
plain = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
plain.no_truncation()
plain.no_padding()

names = files(fortunes)
count = 0
with gzip.GzipFile(os.path.join(out, "fortunes-minilm-ids.jsonl.gz"), "wb", mtime=0) as f:
    for name in names:
        texts = quotes(os.path.join(fortunes, name))
        for index, (text, encoding) in enumerate(zip(texts, plain.encode_batch(texts))):
            line = {"file": name, "quote": index, "scalars": len(text), "ids": encoding.ids}
            f.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
            count += 1
print(f"{count} quotes from {len(names)} files")

texts = {
    "accents": "Héllo, WORLD! Naïve café résumé Ångström crème brûlée",
    "special lowercase": "İstanbul ΣΊΣΥΦΟΣ Straße ǅemal ﬁnance",
    "cjk": "我爱北京天安门 and 日本語テキスト 한국어 \U00020000\U0002A6DF\U0002A700\U0002B81F\U0002B820\U0002B91F\U0002B920\U0002CEAF\U0002CEB0 \uF900\U0002F800",
    "punctuation": "don't stop--now!!! (a/b) $5 + 3 = 8 ~tilde^ `back` |pipe| «guillemets» „quotes“ ¿qué? … — – © ™ € £ § ¶ @home #tag",
    "unassigned and private use": "a\u0378b a\uE000b a\U000F0000b a\uFFFFb a\U000E0001b \U0002B739\U0002EBF0",
    "control characters": "tab\there\nnew\r\nline\x00nul\x07bell\u200bzero\ufeffbom\u00adsoft\ufffdrepl\x7fdel\u0085nel\u2028ls\u00a0nbsp\u3000ideo",
    "overstriking": "_\bu_\bn_\bd_\be_\br_\bl_\bi_\bn_\be_\bd and b\bbo\bol\bld\bd",
    "emoji": "I ❤️ 🍕 👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "long words": "a" * 100 + " " + "b" * 101 + " supercalifragilisticexpialidocious x" + "é" * 99 + " y" + "é" * 100,
    "unknown characters": "ᚠᛇᚻ runes and ꙮ",
    "special tokens in text": "hello [MASK] world [CLS]x[SEP] [mask] [UNK][PAD]",
    "empty": "",
    "whitespace only": "   \n\t  ",
    "numbers": "3.14159 1,000,000 2nd 10% 1e-5 0x1F",
    "url": "http://example.com/a?b=c&d=e user@example.org C:\\path\\file.txt",
    "combining marks": "a\u0301\u0327 e\u0308 \u0301alone n\u0303o",
    "scripts": "Привет мир Ελληνικά مرحبا שלום สวัสดี नमस्ते",
    "fullwidth": "ＡＢＣ１２３！ ｈｅｌｌｏ",
    "math": "∑ x² ≤ ∞ ½ ⅓",
}
cases = []


def record(name, text_list, settings, encodings):
    cases.append({
        "name": name, "texts": text_list, "settings": settings,
        "ids": [e.ids for e in encodings], "type_ids": [e.type_ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings], "tokens": [e.tokens for e in encodings],
    })


for name, text in texts.items():
    record(name, [text], {}, [plain.encode(text)])

# The file's own settings: truncation to 128, padding to a fixed 128.
long_text = quotes(os.path.join(fortunes, "computers"))[0] + " " + texts["accents"] * 20
record("file settings", [texts["accents"], long_text], {"file": True}, tokenizer.encode_batch([texts["accents"], long_text]))

for settings in [
    {"truncation": 16},
    {"truncation": 16, "truncation_direction": "left"},
    {"truncation": 2},
    {"padding": "longest"},
    {"padding": 20, "padding_direction": "left"},
    {"padding": "longest", "pad_to_multiple_of": 8},
    {"truncation": 10, "padding": "longest"},
]:
    t = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))
    t.no_truncation()
    t.no_padding()
    if "truncation" in settings:
        t.enable_truncation(settings["truncation"], direction=settings.get("truncation_direction", "right"))
    if "padding" in settings:
        length = None if settings["padding"] == "longest" else settings["padding"]
        t.enable_padding(direction=settings.get("padding_direction", "right"), length=length,
                         pad_to_multiple_of=settings.get("pad_to_multiple_of"))
    batch = [texts["accents"], texts["numbers"], "short", long_text]
    record(json.dumps(settings, sort_keys=True), batch, settings, t.encode_batch(batch))

with open(os.path.join(out, "tokenizer-edge-cases.json"), "w") as f:
    json.dump({"generator": "scripts/generate_tokenizer_reference.py", "cases": cases}, f, ensure_ascii=True, indent=1)
print(f"{len(cases)} edge cases")
