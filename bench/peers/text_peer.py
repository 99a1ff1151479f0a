#!/usr/bin/env python3
"""PyTorch peer of DistillBench's infer-minilm case: all-MiniLM-L6-v2's forward pass in
Hugging Face `transformers` (eager attention, inference_mode) and mean pooling, on the same
ids (the same linear-congruential stream as bench/DistillBench/TextCases.swift), at the same
thread count. Prints one JSON line like DistillBench.

    python3 bench/peers/text_peer.py --batch 32 --threads 2 --iterations 5
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModel


def bench_ids(batch, length):
    state, mask, ids = 0, (1 << 64) - 1, []
    for _ in range(batch * length):
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        ids.append(1000 + (state >> 33) % 29000)
    return torch.tensor(ids, dtype=torch.long).reshape(batch, length)


def main():
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default=os.path.join(cache, "distill", "all-minilm-l6-v2-0.1.2"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModel.from_pretrained(args.teacher, attn_implementation="eager").eval()
    ids = bench_ids(args.batch, args.length)
    mask = torch.ones_like(ids)

    def step():
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).float()
            return float(((hidden * m).sum(1) / m.sum(1)).sum())

    step()  # warm-up
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"case": "infer-minilm", "peer": "torch", "torch": torch.__version__, "threads": args.threads,
                      "batch": args.batch, "seconds": seconds}))


if __name__ == "__main__":
    main()
