#!/usr/bin/env python3
"""The PyTorch side of the engine benchmarks: the same cases as bench/DistillBench, timed
the same way (one warm-up, then per-iteration wall time). Imported by run_side_by_side.py;
run alone it prints one JSON line per case.

    python3 bench/peers/torch_peer.py --case conv --iterations 10 --threads 2
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def make_workload(name):
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
    raise SystemExit(f"torch_peer: unknown case {name}")


def time_case(name, iterations, threads, flush_denormals=True):
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormals)
    step = make_workload(name)
    step()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    torch.set_flush_denormal(False)
    return seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", required=True)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-flush-denormals", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"case": args.case, "seconds": time_case(args.case, args.iterations, args.threads, not args.no_flush_denormals)}))
