#!/usr/bin/env python3
"""Groups a `perf record` profile's self time by kind of work, for docs/benchmarks.md's
profile tables:

    perf record -g -o step.data .build/release/DistillBench --case train-resnet20-c3-b128 --iterations 8 --threads 2
    python3 bench/profile/perf_breakdown.py step.data [--top 12]

Kinds are matched on the shared object and symbol of each sample (first match wins):
oneDNN's JIT code and library are "gemm"; Distill's unfold/fold are "im2col / col2im"; and
so on (KINDS below). Percentages are of all samples of the process, set-up included.
"""
import argparse
import re
import subprocess
from collections import defaultdict

KINDS = [
    ("gemm (oneDNN JIT sgemm)", r"\[JIT\]|libdnnl|sgemm|gemm"),
    ("depthwise convolution", r"[dD]epthwise"),
    ("im2col / col2im (unfold, fold)", r"unfold|fold_|ConvolutionPlan"),
    ("batch norm", r"batchNorm|BatchNorm|sumAndCenteredDot|sumOfSquaredDeviations"),
    ("elementwise (activations, adds, optimizer)", r"ElementwiseKernels|ReLU|relu|Clamp|clamp|SGD|Optimizer|step"),
    ("memory copy and fill", r"memmove|memcpy|memset|repeating"),
    ("allocation and page faults", r"malloc|free|_int_|brk|mmap|munmap|page|pte|memcg|mm_|charge|lru|folio|zone|alloc"),
    ("thread pool: waiting and waking", r"WorkerPool|futex|sched|spin_lock|spin_unlock|schedule|task_switch|wake"),
    ("pooling", r"Pool2d|maxPool|avgPool|averagePool|adaptiveAvg"),
    ("framework (Swift runtime, autograd, tensor bookkeeping)", r"swift_|\$s|objc|Autograd"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    report = subprocess.run(["perf", "report", "-i", args.data, "--no-children", "--sort", "dso,symbol", "--stdio", "-g", "none"],
                            check=True, capture_output=True, text=True).stdout
    rows = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+(?: tid \d+)?)\s+\[[.k]\]\s+(\S+)", line)
        if match:
            rows.append((float(match.group(1)), match.group(2), match.group(3)))
    totals = defaultdict(float)
    for percent, dso, symbol in rows:
        text = f"{dso} {symbol}"
        kind = next((name for name, pattern in KINDS if re.search(pattern, text)), "other")
        if kind == "other" and dso == "[kernel.kallsyms]":
            kind = "other kernel time"
        totals[kind] += percent
    print("| kind | % of samples |\n| --- | ---: |")
    for kind, percent in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {percent:.1f} |")
    print(f"\n| top symbols (self) | % |\n| --- | ---: |")
    for percent, dso, symbol in rows[:args.top]:
        name = subprocess.run(["swift", "demangle", "--simplified", "--compact", symbol], capture_output=True, text=True).stdout.strip() \
            if symbol.startswith("$s") else symbol
        print(f"| {name[:110]} ({dso}) | {percent:.2f} |")
    # Self time of a WorkerPool closure is the pool's own loop (polling for work, waiting at the
    # join); the chunks it runs are separate symbols.


if __name__ == "__main__":
    main()
