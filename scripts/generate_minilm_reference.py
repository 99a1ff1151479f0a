#!/usr/bin/env python3
"""Writes Tests/ModelFormatsTests/Fixtures/minilm_reference.npz: the token ids of 1,000
quotes from Debian's `fortunes` (as the Python tokenizer makes them) and the sentence
embeddings that Hugging Face `transformers` gives for them with all-MiniLM-L6-v2, pooled and
normalised as the model's sentence-transformers pipeline does (modules.json: Transformer,
mean Pooling, Normalize; max_seq_length 256 from sentence_bert_config.json).

The Swift test (MiniLMTeacherTests) runs our encoder on the same ids, so it does not depend
on our tokenizer.

    apt-get install -y fortunes
    pip install torch transformers
    python3 scripts/generate_minilm_reference.py [--teacher DIR]

DIR holds config.json, model.safetensors and tokenizer.json (default: the cache folder that
scripts/fetch-minilm.sh fills). The fixture stores:
  lengths     int32 [1000]            tokens per quote ([CLS] ... [SEP], at most 256)
  ids         uint16 [sum(lengths)]   the ids, quote after quote
  embeddings  int32 [1000, 384]       round(embedding · 2^17): steps of 7.6e-6, so the stored
                                      values are within 3.9e-6 of transformers' float32 ones
  step        float32 [1]             2^-17
"""
import argparse
import io
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

FORTUNES = "/usr/share/games/fortunes"
COUNT = 1000
MAX_LENGTH = 256
STEP = 2.0 ** -17


def quotes():
    """Every quote of every fortunes file (sorted by file name), in file order."""
    result = []
    for name in sorted(os.listdir(FORTUNES)):
        path = os.path.join(FORTUNES, name)
        if name.endswith((".dat", ".u8")) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        blocks, current = [], []
        for line in text.split("\n"):
            if line.strip() == "%":
                blocks.append("\n".join(current))
                current = []
            else:
                current.append(line)
        blocks.append("\n".join(current))
        result += [b.strip() for b in blocks if b.strip()]
    return result


def main():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default=os.path.join(cache, "distill", "all-minilm-l6-v2-0.1.2"))
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelFormatsTests",
                                                      "Fixtures", "minilm_reference.npz"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    everything = quotes()
    chosen = random.Random(15).sample(everything, COUNT)
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    model = AutoModel.from_pretrained(args.teacher, attn_implementation="eager").eval()
    ids = [tokenizer(q, truncation=True, max_length=MAX_LENGTH)["input_ids"] for q in chosen]
    embeddings = np.zeros((COUNT, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, COUNT, 32):
            batch = tokenizer(chosen[start:start + 32], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
            assert batch["input_ids"].shape[1] == max(len(i) for i in ids[start:start + 32])
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embeddings[start:start + 32] = F.normalize(pooled, p=2, dim=1).numpy()
    quantized = np.round(embeddings / STEP).astype(np.int32)
    assert np.abs(quantized * STEP - embeddings).max() <= STEP / 2 + 1e-9
    buffer = io.BytesIO()
    np.savez_compressed(buffer, lengths=np.array([len(i) for i in ids], dtype=np.int32),
                        ids=np.array([t for i in ids for t in i], dtype=np.uint16),
                        embeddings=quantized, step=np.array([STEP], dtype=np.float32))
    with open(args.out + ".tmp", "wb") as f:
        f.write(buffer.getvalue())
    os.replace(args.out + ".tmp", args.out)
    lengths = [len(i) for i in ids]
    print(f"{len(everything)} quotes, {COUNT} chosen: {sum(lengths)} tokens, lengths {min(lengths)}..{max(lengths)}, "
          f"{sum(l == MAX_LENGTH for l in lengths)} truncated; wrote {os.path.getsize(args.out)} bytes to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
