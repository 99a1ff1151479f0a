#!/usr/bin/env python3
"""The PyTorch side of the engine benchmarks: the same cases as bench/DistillBench, timed
the same way (one warm-up, then per-iteration wall time). run_side_by_side.py runs it in a
fresh process for every case and repetition; it prints one JSON line.

    python3 bench/peers/torch_peer.py --case conv --iterations 10 --threads 2
    python3 bench/peers/torch_peer.py --case train-resnet20-c3-b128 --rss

Model cases are named as DistillBench's: train-MODEL[-cC][-bB], infer-MODEL[-cC][-bB]
(-c3: 3×32×32 inputs, -c1 or none: 1×28×28). The case `idle` imports torch and builds
nothing: its peak resident memory is the baseline the driver subtracts.
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import zoo_models  # noqa: E402
from case_names import parse_model_case  # noqa: E402

_TRAIN_IMAGES = None
_TEACHER_LOGITS = {}


def fashion_mnist_train():
    """The 60,000 training images, normalised as Distill does, and their labels."""
    global _TRAIN_IMAGES
    if _TRAIN_IMAGES is None:
        root = "/usr/share/datasets/fashion-mnist"

        def idx(name):
            with gzip.open(os.path.join(root, name)) as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
        x = (idx("train-images-idx3-ubyte.gz").astype(np.float32) / 255 - 0.2860) / 0.3530
        _TRAIN_IMAGES = (torch.from_numpy(x[:, None].copy()), torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64)))
    return _TRAIN_IMAGES


def decaying_weights_only(model, weight_decay):
    """Distill's parameter groups (ParameterGroup.decayingWeightsOnly, the Trainer's): weight
    decay on weights (rank ≥ 2), none on biases and normalisation parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def kd_epoch(student, optimizer, teacher_logits_for, images, labels, batch=128, temperature=4.0, alpha=0.9):
    """One KD epoch, as torchdistill and most tutorials write it: shuffled batches, the
    teacher's logits for each batch, KL at temperature T scaled by T², plus (1 − α)·CE."""
    order = torch.randperm(len(images))
    for start in range(0, len(order), batch):
        index = order[start:start + batch]
        x, y = images[index], labels[index]
        with torch.inference_mode():
            t = teacher_logits_for(x, index)
        t = t.clone()  # an ordinary tensor: the loss's backward keeps it
        s = student(x)
        kd = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1), reduction="batchmean", log_target=True)
        loss = alpha * temperature ** 2 * kd + (1 - alpha) * F.cross_entropy(s, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 2.0)
        optimizer.step()
    return float(loss.detach())


def make_workload(name, batch=128):
    g = torch.Generator().manual_seed(0)
    if name == "sgemm":
        a, b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)

        def step():
            with torch.no_grad():
                return float(torch.mm(a, b)[0, 0])
        return step
    if name == "conv":
        x = torch.randn(128, 32, 28, 28, generator=g, requires_grad=True)
        w = (torch.randn(64, 32, 3, 3, generator=g) * 0.05).requires_grad_()
        b = torch.zeros(64, requires_grad=True)

        def step():
            y = F.conv2d(x, w, b, padding=1)
            y.backward(torch.ones_like(y))
            check = float(w.grad.sum())
            x.grad = w.grad = b.grad = None
            return check
        return step
    if name == "cnn":
        def leaf(shape, fan_in):
            bound = 1 / fan_in ** 0.5
            return (torch.rand(*shape, generator=g) * 2 * bound - bound).requires_grad_()
        p = [leaf((8, 1, 3, 3), 9), leaf((8,), 9), leaf((16, 8, 3, 3), 72), leaf((16,), 72),
             leaf((64, 784), 784), leaf((64,), 784), leaf((10, 64), 64), leaf((10,), 64)]
        x = torch.randn(128, 1, 28, 28, generator=g)
        labels = torch.arange(128) % 10

        def step():
            h = F.max_pool2d(F.relu(F.conv2d(x, p[0], p[1], padding=1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, p[2], p[3], padding=1)), 2).flatten(1)
            h = F.linear(F.relu(F.linear(h, p[4], p[5])), p[6], p[7])
            loss = F.cross_entropy(h, labels)
            loss.backward()
            with torch.no_grad():
                for t in p:
                    t -= 0.01 * t.grad
                    t.grad = None
            return float(loss.detach())
        return step
    if name == "denormal":
        x = torch.full((1 << 20,), 1e-39)

        def step():
            with torch.no_grad():
                y = x
                for _ in range(64):
                    y = y * 0.5 + y * 1e-3 + x
                return float(y.sum())
        return step
    if name.startswith("train-") or name.startswith("infer-"):
        training, model_name, options, batch = parse_model_case(name, batch)
        model = zoo_models.make(model_name, **options)
        x = torch.randn(batch, options.get("input_channels", 1), options.get("input_size", 28), options.get("input_size", 28), generator=g)
        labels = torch.arange(batch) % 10
        if training:
            model.train()
            optimizer = torch.optim.SGD(decaying_weights_only(model, 5e-4), lr=0.01, momentum=0.9)

            def step():
                loss = F.cross_entropy(model(x), labels)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                return float(loss.detach())
            step.parameters = sum(p.numel() for p in model.parameters())
            return step
        model.eval()
        calls = 100 if batch == 1 else 1

        def step():
            with torch.inference_mode():
                total = 0.0
                for _ in range(calls):
                    total += float(model(x)[:, 0].sum())
                return total
        step.calls = calls
        step.parameters = sum(p.numel() for p in model.parameters())
        return step
    if name in ("distill-epoch-online", "distill-epoch-cached"):
        images, labels = fashion_mnist_train()
        teacher = zoo_models.make("cnn-teacher").eval()
        if name == "distill-epoch-online":
            def logits_for(x, index):
                return teacher(x)
        else:
            if "cached" not in _TEACHER_LOGITS:  # once per process, outside the timing
                with torch.inference_mode():
                    _TEACHER_LOGITS["cached"] = torch.cat([teacher(images[i:i + 1000]) for i in range(0, len(images), 1000)])

            def logits_for(x, index):
                return _TEACHER_LOGITS["cached"][index]

        def step():
            student = zoo_models.make("cnn-student").train()
            optimizer = torch.optim.SGD(decaying_weights_only(student, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
            return kd_epoch(student, optimizer, logits_for, images, labels)
        step.warmup = lambda: kd_epoch(zoo_models.make("cnn-student").train(),
                                       torch.optim.SGD(zoo_models.make("cnn-student").parameters(), lr=0.05),
                                       logits_for, images[:1280], labels[:1280])
        return step
    raise SystemExit(f"torch_peer: unknown case {name}")


def peak_rss():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork/exec.
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def time_case(name, iterations, threads, flush_denormals=True, batch=128):
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormals)
    if name == "idle":
        return [], None
    step = make_workload(name, batch)
    getattr(step, "warmup", step)()
    calls = getattr(step, "calls", 1)
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        seconds.append((time.perf_counter() - start) / calls)
    torch.set_flush_denormal(False)
    return seconds, getattr(step, "parameters", None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-flush-denormals", action="store_true")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rss", action="store_true", help="add the peak resident memory of this process")
    args = parser.parse_args()
    seconds, parameters = time_case(args.case, args.iterations, args.threads, not args.no_flush_denormals, args.batch)
    result = {"case": args.case, "seconds": seconds, "torch": torch.__version__}
    if parameters is not None:
        result["parameters"] = parameters
    if args.rss:
        result["peak_rss"] = peak_rss()
    print(json.dumps(result))
