#!/usr/bin/env python3
"""The PyTorch side of bench/distributed/scaling.py: one epoch of training a zoo model on
Fashion-MNIST, as `distill train --labels-per-class N --validation-fraction 0 --epochs 1`
does, in one process or data-parallel with DistributedDataParallel on Gloo.

    python3 bench/distributed/torch_ddp_peer.py --model cnn-teacher --labels-per-class 1000
    # two processes (scaling.py starts them, each a fresh process):
    python3 bench/distributed/torch_ddp_peer.py --model cnn-teacher --world-size 2 --rank 0 --port 29611 &
    python3 bench/distributed/torch_ddp_peer.py --model cnn-teacher --world-size 2 --rank 1 --port 29611

The recipe is Distill's default, as in bench/peers/torch_whole_run.py: SGD with Nesterov
momentum 0.9, learning rate 0.05, weight decay 5e-4 on weights only (rank ≥ 2), a linear
warm-up of a tenth of the steps (at most 100) from 1% then cosine, clipping at global norm 2;
the images (normalised as Distill does) are in memory as one tensor. The global batch is
--batch; each of the --world-size processes takes its consecutive part of every global
batch of one seeded shuffled order (as Distill's ranks do), and the short last batch is
dropped when distributed (Distill drops it too; one process keeps it, as Distill does).
`torch.set_num_threads(--threads)` (default 1) and one inter-op thread. DDP is used as a
PyTorch user would: default bucket sizes (25 MiB; the first 1 MiB), gradients averaged
during backward. Batch norm is per process: PyTorch's SyncBatchNorm needs GPU modules
("SyncBatchNorm layers only work with GPU modules"), so a CPU DDP run cannot synchronise it.

Rank 0 prints one JSON line: {"event": "epoch", "seconds": the epoch's training loop,
"examples": images trained, "steps": optimizer steps, "loss": last loss}.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import zoo_models  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "peers"))
import recipe  # noqa: E402

MEAN, STD = 0.2860, 0.3530


def labelled_subset(root, per_class, seed):
    """per_class seeded training images of each class (the set --labels-per-class keeps;
    which images does not change the time of an epoch), normalised, in memory."""
    images = recipe.read_idx(os.path.join(root, "train-images-idx3-ubyte.gz"))
    labels = recipe.read_idx(os.path.join(root, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    generator = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([generator.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)]))
    x = (torch.from_numpy(images[keep].astype(np.float32)) / 255 - MEAN) / STD
    return x[:, None].contiguous(), torch.from_numpy(labels[keep])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cnn-student")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--labels-per-class", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--port", type=int, default=29611)
    args = parser.parse_args()
    if args.batch % args.world_size:
        sys.exit(f"Error: --batch {args.batch} does not divide by --world-size {args.world_size}")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    distributed = args.world_size > 1
    if distributed:
        import torch.distributed as dist
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(args.port)
        dist.init_process_group("gloo", rank=args.rank, world_size=args.world_size)

    x, y = labelled_subset(args.data, args.labels_per_class, args.seed)
    model = zoo_models.make(args.model).train()
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's weights
    n = len(x)
    steps = n // args.batch if distributed else math.ceil(n / args.batch)
    optimizer, schedule = recipe.sgd_warmup_cosine(model, steps)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    part = args.batch // args.world_size
    if distributed:
        dist.barrier()
    start = time.perf_counter()
    examples = 0
    for step in range(steps):
        batch = order[step * args.batch:(step + 1) * args.batch]
        if distributed:
            batch = batch[args.rank * part:(args.rank + 1) * part]
        inputs, targets = x[batch], y[batch]
        loss = F.cross_entropy(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optimizer.step()
        schedule.step()
        examples += len(batch) * args.world_size
    seconds = time.perf_counter() - start
    if args.rank == 0:
        print(json.dumps({"event": "epoch", "seconds": seconds, "examples": examples, "steps": steps,
                          "loss": float(loss.detach())}), flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
