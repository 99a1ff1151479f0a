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

# case: (label, Distill's case and batch, PyTorch's case, iterations per process)
CASES = {
    "sgemm": ("sgemm 1024×1024×1024", "sgemm", 128, "sgemm", 10),
    "sgemm-mlp": ("sgemm [128, 784]·[784, 128]", "sgemm-mlp", 128, None, 100),
    "conv": ("conv2d fwd+bwd [128,32,28,28]→64, 3×3, pad 1", "conv", 128, "conv", 10),
    "cnn": ("small CNN train step, batch 128", "cnn", 128, "cnn", 10),
    "denormal": ("denormal elementwise, flush-to-zero on", "denormal", 128, "denormal", 10),
    "denormal-off": ("denormal elementwise, flush-to-zero off", "denormal", 128, "denormal", 10),
}
MODEL_CASES = {
    "train-cnn-teacher": ("cnn-teacher train step, batch 128", "train-cnn-teacher", 128, "train-cnn-teacher", 10),
    "train-cnn-student": ("cnn-student train step, batch 128", "train-cnn-student", 128, "train-cnn-student", 30),
    "train-mlp": ("mlp 784-128-10 train step, batch 128", "train-mlp", 128, "train-mlp", 100),
    "infer-cnn-student-1": ("cnn-student inference, batch 1", "infer-cnn-student", 1, "infer-cnn-student", 5),
    "infer-mlp-1": ("mlp inference, batch 1", "infer-mlp", 1, "infer-mlp", 5),
    "infer-cnn-student-256": ("cnn-student inference, batch 256", "infer-cnn-student", 256, "infer-cnn-student", 30),
    "infer-mlp-256": ("mlp inference, batch 256", "infer-mlp", 256, "infer-mlp", 100),
    "infer-cnn-teacher-256": ("cnn-teacher inference, batch 256 (a teacher-cache pass)", "infer-cnn-teacher", 256, "infer-cnn-teacher", 10),
    "train-cnn-student-32": ("cnn-student train step, batch 32", "train-cnn-student", 32, "train-cnn-student", 30),
    "train-cnn-student-512": ("cnn-student train step, batch 512", "train-cnn-student", 512, "train-cnn-student", 10),
    "distill-epoch-online": ("KD epoch, Distill cached vs PyTorch teacher online", "distill-epoch", 128, "distill-epoch-online", 1),
    "distill-epoch-cached": ("KD epoch, both with cached teacher outputs", "distill-epoch", 128, "distill-epoch-cached", 1),
    "train-mobilenetv2-c3": ("mobilenetv2 train step, 3×32×32, batch 128", "train-mobilenetv2", 128, "train-mobilenetv2", 10),
    "train-mobilenetv2-c3-32": ("mobilenetv2 train step, 3×32×32, batch 32", "train-mobilenetv2", 32, "train-mobilenetv2", 20),
}
# Example shapes other than Fashion-MNIST's 1×28×28, by case.
INPUTS = {"train-mobilenetv2-c3": (3, 32, 32), "train-mobilenetv2-c3-32": (3, 32, 32)}
CASES.update(MODEL_CASES)


def distill_times(case, iterations, threads, rss=False):
    _, name, batch, _, _ = CASES[case]
    extra = ["--no-flush-denormals"] if case == "denormal-off" else []
    extra += ["--rss"] if rss else []
    extra += ["--input", ",".join(map(str, INPUTS[case]))] if case in INPUTS else []
    out = subprocess.run([BENCH, "--case", name, "--iterations", str(iterations), "--threads", str(threads), "--batch", str(batch)] + extra,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_times(case, iterations, threads):
    _, _, batch, name, _ = CASES[case]
    return torch_peer.time_case(name, iterations, threads, flush_denormals=case != "denormal-off", batch=batch,
                                input_shape=INPUTS.get(case, (1, 28, 28)))


def torch_subprocess(case, iterations, threads):
    """The peer in a fresh process, for its peak resident memory."""
    _, _, batch, name, _ = CASES[case]
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "torch_peer.py"), "--case", name, "--iterations",
                          str(iterations), "--threads", str(threads), "--batch", str(batch), "--rss"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def spread(values):
    return f"{min(values):.2f}–{max(values):.2f}"


def extras(repeats, scaling_repeats=9, scaling_steps=10):
    """Two-thread scaling, peak memory, epoch time against data size, steady memory."""
    print("\n## Two-thread scaling of the cnn-teacher training step (images/s at 2 threads ÷ at 1)\n")
    ours, theirs = [], []
    # Scaling is the noisiest figure on a shared machine: more repeats and steps than the rest.
    for _ in range(scaling_repeats):
        one = statistics.median(distill_times("train-cnn-teacher", scaling_steps, 1)["seconds"])
        two = statistics.median(distill_times("train-cnn-teacher", scaling_steps, 2)["seconds"])
        t1 = statistics.median(torch_times("train-cnn-teacher", scaling_steps, 1))
        t2 = statistics.median(torch_times("train-cnn-teacher", scaling_steps, 2))
        ours.append(one / two)
        theirs.append(t1 / t2)
    print("| | scaling | range |\n| --- | ---: | --- |")
    print(f"| Distill | {statistics.median(ours):.2f} | {spread(ours)} |\n| PyTorch | {statistics.median(theirs):.2f} | {spread(theirs)} |")

    print("\n## Peak resident memory, training cnn-teacher at batch 128 (20 steps, fresh process)\n")
    ours, theirs = [], []
    for _ in range(3):
        ours.append(distill_times("train-cnn-teacher", 20, 2, rss=True)["peak_rss"] / 2**20)
        theirs.append(torch_subprocess("train-cnn-teacher", 20, 2)["peak_rss"] / 2**20)
    print(f"| Distill | PyTorch | ratio (PyTorch ÷ Distill) |\n| ---: | ---: | ---: |")
    print(f"| {statistics.median(ours):.0f} MiB | {statistics.median(theirs):.0f} MiB | {statistics.median(theirs) / statistics.median(ours):.2f} |")

    print("\n## cnn-student epoch time against data size (Distill, batch 128)\n")
    runs = []
    for _ in range(repeats):
        out = subprocess.run([BENCH, "--case", "epoch-size"], check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1])["seconds"])
    print("| images | seconds (median) | seconds per 10,000 images |\n| ---: | ---: | ---: |")
    for size in ["10000", "30000", "60000"]:
        seconds = statistics.median(run[size] for run in runs)
        print(f"| {int(size):,} | {seconds:.2f} | {seconds / int(size) * 10000:.3f} |")

    print("\n## Resident memory over 10,000 cnn-student training steps (Distill, batch 128)\n")
    out = subprocess.run([BENCH, "--case", "memory-steps", "--iterations", "10000"], check=True, capture_output=True, text=True).stdout
    samples = json.loads(out.strip().splitlines()[-1])["resident"]
    warm = next(rss for step, rss in samples if step >= 1000)
    last = samples[-1][1]
    print("| step | resident MiB |\n| ---: | ---: |")
    for step, rss in samples:
        if step in (1, 250, 1000, 2500, 5000, 7500, 10000):
            print(f"| {step:,} | {rss / 2**20:.1f} |")
    print(f"\nGrowth from step 1,000 to 10,000: {(last - warm) / warm * 100:+.2f}% (target: within 5%).")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--extras", action="store_true", help="also scaling, memory and epoch-size reports")
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
        label, _, _, peer, iterations = CASES[case]
        if case in MODEL_CASES or args.iterations == 10:
            iterations = iterations if case in MODEL_CASES else args.iterations
        ours, theirs, ratios = [], [], []
        for _ in range(args.repeats):
            a = statistics.median(distill_times(case, iterations, args.threads)["seconds"])
            ours.append(a)
            if peer is None:
                continue
            b = statistics.median(torch_times(case, iterations, args.threads))
            theirs.append(b)
            ratios.append(b / a)
        if peer is None:
            print(f"| {label} | {statistics.median(ours) * 1e3:.3f} | — | — | — |", flush=True)
            continue
        print(f"| {label} | {statistics.median(ours) * 1e3:.3f} | {statistics.median(theirs) * 1e3:.3f} "
              f"| {statistics.median(ratios):.2f} | {spread(ratios)} |", flush=True)
    if args.extras:
        extras(args.repeats)


if __name__ == "__main__":
    main()
