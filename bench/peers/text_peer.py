#!/usr/bin/env python3
"""PyTorch peer of DistillBench's text cases, on the same ids (the same linear-congruential
stream as bench/DistillBench/TextCases.swift), at the same thread count. Prints one JSON line
like DistillBench.

- infer-minilm: all-MiniLM-L6-v2's forward pass in Hugging Face `transformers` (eager
  attention, inference_mode) and mean pooling;
- train-text-transformer-lN: one training step of a student of MiniLM's shape with N layers
  (dropout 0, as `distill distill --dropout 0` trains it): forward pass, mean pooling, 1 −
  cosine with fixed random targets, backward pass, Adam's update (lr 1e-4); with
  --matmul-precision bfloat16, the forward pass and loss under torch.autocast("cpu",
  bfloat16), PyTorch's bfloat16 training on CPU.

    python3 bench/peers/text_peer.py --batch 32 --threads 2 --iterations 5
    python3 bench/peers/text_peer.py --case train-text-transformer-l3 --batch 32 --matmul-precision bfloat16
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoConfig, AutoModel


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
    parser.add_argument("--case", default="infer-minilm")
    parser.add_argument("--matmul-precision", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids = bench_ids(args.batch, args.length)
    mask = torch.ones_like(ids)

    def pooled(hidden):
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1)

    if args.case == "infer-minilm":
        model = AutoModel.from_pretrained(args.teacher, attn_implementation="eager").eval()

        def step():
            with torch.inference_mode():
                return float(pooled(model(input_ids=ids, attention_mask=mask).last_hidden_state).sum())
    elif args.case.startswith("train-text-transformer-l"):
        layers = int(args.case[len("train-text-transformer-l"):])
        config = AutoConfig.from_pretrained(args.teacher, num_hidden_layers=layers, hidden_dropout_prob=0.0,
                                            attention_probs_dropout_prob=0.0)
        torch.manual_seed(0)
        model = AutoModel.from_config(config, attn_implementation="eager").train()
        targets = torch.randn(args.batch, config.hidden_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        bfloat16 = args.matmul_precision == "bfloat16"

        def step():
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                y = pooled(model(input_ids=ids, attention_mask=mask).last_hidden_state)
                loss = (1 - torch.nn.functional.cosine_similarity(y.float(), targets, dim=1)).mean()
            loss.backward()
            optimizer.step()
            return float(loss.detach())
    else:
        parser.error(f"--case {args.case}: infer-minilm or train-text-transformer-lN")

    step()  # warm-up
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"case": args.case, "peer": "torch", "torch": torch.__version__, "threads": args.threads,
                      "batch": args.batch, "matmul_precision": args.matmul_precision, "seconds": seconds}))


if __name__ == "__main__":
    main()
