#!/usr/bin/env python3
"""A/B of conv2d's paths in whole training steps and inference passes (issue 17).

Runs DistillBench once per (case, threads, variant), the variants alternating within each
repetition, and prints per case the minimum and median over the repetitions of each
variant's median step, and the ratio to the first variant (above 1: faster than it).

    python3 bench/onednn/ab_convolution.py --repeats 3 --threads 1,2 \\
        --variant im2col=".build/release/DistillBench --convolution-path im2col" \\
        --variant primitives=".build/release/DistillBench --convolution-path primitives" \\
        --cases train-resnet20-c3-b128,infer-resnet20-c3-b256

The machine it runs on is shared and noisy: only ratios within one run mean anything.
"""
import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess


def cpu_line():
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "?":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else platform.machine())
    return f"{model}, {isa}, {os.cpu_count()} cores"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", action="append", required=True, help="LABEL=COMMAND (DistillBench and its options)")
    parser.add_argument("--cases", required=True)
    parser.add_argument("--threads", default="2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variant]
    print(f"# CPU: {cpu_line()}; load average at start {os.getloadavg()[0]:.2f}")
    print(f"# variants: {variants}; repeats {args.repeats}, iterations {args.iterations}")
    results = {}
    for case in args.cases.split(","):
        for threads in [int(t) for t in args.threads.split(",")]:
            for _ in range(args.repeats):
                for label, command in variants:
                    argv = shlex.split(command) + ["--case", case, "--iterations", str(args.iterations), "--threads", str(threads)]
                    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
                    results.setdefault((case, threads, label), []).append(statistics.median(seconds) * 1e3)
            row = [f"{case}, {threads}t"]
            base = results[(case, threads, variants[0][0])]
            for label, _ in variants:
                times = results[(case, threads, label)]
                row.append(f"{label} {min(times):.2f} / {statistics.median(times):.2f} ms "
                           f"(x{min(base) / min(times):.2f} / x{statistics.median(base) / statistics.median(times):.2f})")
            print(" | ".join(row), flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
