#!/usr/bin/env python3
"""Whole runs, process start included: `distill train` and `distill distill` for one epoch
against torch_whole_run.py doing the same epoch with its DataLoader, alternating, medians.

    swift build -c release --product distill
    python3 bench/peers/run_whole_runs.py [--repeats 3] [--teacher RUN/model.safetensors] [--rows train,distill-cold,distill-warm]

Rows: `train` (cnn-student from scratch), `distill-cold` (cnn-teacher → cnn-student, KD,
with an empty teacher cache: the teacher's pass over the training images is part of the
run) and `distill-warm` (the cache left by a cold run is read). Without --teacher, a
cnn-teacher is trained for one epoch first (`distill train`, not timed) and used by both
sides. Each repetition runs Distill then PyTorch as fresh processes and reads their JSON
lines as they arrive: the time from process start to the first optimizer step's line (time
to first step), the epoch's own training time (what the run reports), and the wall time to
exit. "Fixed cost" is wall time less the epoch's training time: loading, the teacher's
outputs, validation, test evaluation, and for Distill also the latency measurement and the
report. Medians over repetitions; these machines are shared and noisy.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_whole_run.py")


def timed(command, first_step_event):
    """Runs `command`; returns wall seconds, seconds to the first-step line, the epoch's
    training seconds and the result line's fields."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    first, epoch, result = None, 0.0, {}
    for line in process.stdout:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if first is None and event.get("event") == first_step_event:
            first = time.perf_counter() - start
        if event.get("event") == "epoch":
            epoch += event["seconds"]
        if event.get("event") == "result":
            result = event
    if process.wait() != 0:
        raise SystemExit(f"run_whole_runs: {' '.join(command)} failed with {process.returncode}")
    return {"wall": time.perf_counter() - start, "first_step": first, "epoch": epoch, "result": result}


def ours(row, teacher, out, cache):
    command = [DISTILL, "train", "--model", "cnn-student"] if row == "train" else [DISTILL, "distill", "--teacher", teacher, "--cache-directory", cache]
    return timed(command + ["--epochs", "1", "--out", out, "--json"], "step")


def theirs(row, teacher, out, cache, threads):
    command = [sys.executable, PEER, "train", "--model", "cnn-student"] if row == "train" else [sys.executable, PEER, "distill", "--teacher", teacher, "--cache-directory", cache]
    return timed(command + ["--out", out, "--threads", str(threads)], "first_step")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads (Distill uses all cores)")
    parser.add_argument("--teacher", help="a cnn-teacher's model.safetensors (default: train one for an epoch first)")
    parser.add_argument("--rows", default="train,distill-cold,distill-warm")
    args = parser.parse_args()
    rows = args.rows.split(",")
    scratch = tempfile.mkdtemp(prefix="whole-runs-")
    teacher = args.teacher
    if teacher is None and any(r.startswith("distill") for r in rows):
        subprocess.run([DISTILL, "train", "--model", "cnn-teacher", "--epochs", "1", "--out", os.path.join(scratch, "teacher"), "--quiet"], check=True)
        teacher = os.path.join(scratch, "teacher", "model.safetensors")
    samples = {(row, side): [] for row in rows for side in ("distill", "torch")}
    for repeat in range(args.repeats):
        for row in rows:
            for side in ("distill", "torch"):
                folder = os.path.join(scratch, f"{side}-{row}-{repeat}")
                cache = os.path.join(scratch, f"{side}-cache-{repeat}")
                if row == "distill-cold":
                    shutil.rmtree(cache, ignore_errors=True)
                elif row == "distill-warm" and not os.path.exists(cache):
                    # A warm row alone: a cold run (not timed) fills the cache first.
                    (ours if side == "distill" else lambda *a: theirs(*a, args.threads))("distill-cold", teacher, folder + "-fill", cache)
                run = ours(row, teacher, folder, cache) if side == "distill" else theirs(row, teacher, folder, cache, args.threads)
                samples[(row, side)].append(run)
                print(f"# {row} {side} repeat {repeat + 1}: wall {run['wall']:.2f} s, first step {run['first_step']:.2f} s, "
                      f"epoch {run['epoch']:.2f} s, test accuracy {run['result'].get('test_accuracy', float('nan')):.4f}", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)

    def median(row, side, key):
        values = [run[key] if key != "fixed" else run["wall"] - run["epoch"] for run in samples[(row, side)]]
        return statistics.median(values)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, PyTorch {args.threads} threads, medians of {args.repeats}")
    print()
    print("| run | Distill wall | PyTorch wall | Distill first step | PyTorch first step | Distill epoch | PyTorch epoch | Distill fixed cost | PyTorch fixed cost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    labels = {"train": "`train` cnn-student, 1 epoch", "distill-cold": "`distill` KD, 1 epoch, cold cache",
              "distill-warm": "`distill` KD, 1 epoch, warm cache"}
    for row in rows:
        cells = [f"{median(row, side, key):.1f} s" for key in ("wall", "first_step", "epoch", "fixed") for side in ("distill", "torch")]
        print(f"| {labels[row]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
