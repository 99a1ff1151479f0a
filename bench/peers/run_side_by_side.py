#!/usr/bin/env python3
"""Runs DistillBench and the PyTorch peer on the same cases, alternating, and prints the
speed ratio PyTorch time ÷ Distill time (above 1: Distill is faster) from medians.

    swift build -c release --product DistillBench
    python3 bench/peers/run_side_by_side.py [--repeats 5] [--iterations 10] [--threads 2] [--cases sgemm,conv]

Each repetition runs Distill (a fresh process, one warm-up, then --iterations timed steps)
and then PyTorch (same), and keeps each side's median step time. The table reports the
median over repetitions and the range of the per-repetition ratios: these machines are
shared and noisy (±30%), so only same-run ratios are compared.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import torch  # noqa: E402
import torch_peer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BENCH = os.path.join(ROOT, ".build", "release", "DistillBench")

CASES = {
    "sgemm": "sgemm 1024×1024×1024",
    "conv": "conv2d fwd+bwd [128,32,28,28]→64, 3×3, pad 1",
    "cnn": "small CNN train step, batch 128",
    "denormal": "denormal elementwise, flush-to-zero on",
    "denormal-off": "denormal elementwise, flush-to-zero off",
}


def distill_times(case, iterations, threads):
    name, extra = (case, [])
    if case == "denormal-off":
        name, extra = "denormal", ["--no-flush-denormals"]
    out = subprocess.run([BENCH, "--case", name, "--iterations", str(iterations), "--threads", str(threads)] + extra,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def torch_times(case, iterations, threads):
    if case == "denormal-off":
        return torch_peer.time_case("denormal", iterations, threads, flush_denormals=False)
    return torch_peer.time_case(case, iterations, threads)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    if not os.path.exists(BENCH):
        sys.exit(f"{BENCH} is missing: run 'swift build -c release --product DistillBench' first")
    cases = args.cases.split(",")
    for case in cases:
        if case not in CASES:
            sys.exit(f"unknown case {case}; known: {', '.join(CASES)}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads={args.threads}, "
          f"torch {torch.__version__}, repeats={args.repeats}, iterations={args.iterations}")
    print("| case | Distill ms | PyTorch ms | ratio (PyTorch ÷ Distill) | ratio range |")
    print("| --- | ---: | ---: | ---: | --- |")
    for case in cases:
        ours, theirs, ratios = [], [], []
        for _ in range(args.repeats):
            a = statistics.median(distill_times(case, args.iterations, args.threads))
            b = statistics.median(torch_times(case, args.iterations, args.threads))
            ours.append(a)
            theirs.append(b)
            ratios.append(b / a)
        print(f"| {CASES[case]} | {statistics.median(ours) * 1e3:.2f} | {statistics.median(theirs) * 1e3:.2f} "
              f"| {statistics.median(ratios):.2f} | {min(ratios):.2f}–{max(ratios):.2f} |", flush=True)


if __name__ == "__main__":
    main()
