#!/usr/bin/env python3
"""The peer of DistillBench's `tokenize` case: Hugging Face `tokenizers` encodes every quote of
Debian's fortunes with all-MiniLM-L6-v2's tokenizer.json, no truncation or padding, on one
thread (TOKENIZERS_PARALLELISM=false), and prints the same JSON line as DistillBench:

    python3 bench/peers/tokenizer_peer.py [--iterations N]
"""
import argparse
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import fortunes  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--iterations", type=int, default=10)
arguments = parser.parse_args()
cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
tokenizer = Tokenizer.from_file(os.path.join(cache, "distill", "all-minilm-l6-v2-0.1.2", "tokenizer.json"))
tokenizer.no_truncation()
tokenizer.no_padding()
quotes = [q for name in fortunes.files() for q in fortunes.quotes(os.path.join(fortunes.FOLDER, name))]
tokenizer.encode_batch(quotes)
seconds = []
for _ in range(arguments.iterations):
    start = time.perf_counter()
    tokenizer.encode_batch(quotes)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"case": "tokenize", "seconds": seconds, "quotes": len(quotes)}))
