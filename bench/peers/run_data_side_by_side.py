#!/usr/bin/env python3
"""Image folders streamed from disk, Distill against PyTorch's DataLoader, in one run.

    swift build -c release --product DistillBench
    python3 bench/peers/run_data_side_by_side.py [--repeats 3] [--root /tmp/distill-data-bench]

Generates (once, untimed, with Pillow) three folders of 10 classes under --root: 20,000
32×32 RGB PNGs, 2,000 224×224 RGB JPEGs and 100,000 32×32 PNGs. Then, --repeats times,
alternating Distill and PyTorch, each a fresh process: one epoch of each folder from a
scan of it, through DistillBench's stream-epoch and torch_data_peer.py's epoch (decode,
float, normalise, shuffled batches of 256; PyTorch with 2 worker processes). Before every
run the folder's pages are dropped from the page cache (posix_fadvise DONTNEED on every
file: no root needed), so each run starts from a cold file cache as far as the virtual disk
allows. Reports images per second (median over the repeats) and the ratio Distill ÷
PyTorch with its range. Last, the memory figure: DistillBench's stream-train over the
100,000-image folder (scan, channel statistics over every image, --train-steps steps of
cnn-student at batch 128), its peak resident memory (VmHWM).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BENCH = os.path.join(ROOT, ".build", "release", "DistillBench")
PEER = os.path.join(HERE, "torch_data_peer.py")

FOLDERS = {  # name: (kind, count, label)
    "png32-20k": ("png32", 20_000, "32×32 PNG, 20,000 images"),
    "jpeg224-2k": ("jpeg224", 2_000, "224×224 JPEG, 2,000 images"),
    "png32-100k": ("png32", 100_000, "32×32 PNG, 100,000 images"),
}


def evict(folder):
    """Drops the folder's files from the page cache."""
    for directory, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def last_json(command):
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu():
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE4.2" if "sse4_2" in flags else "baseline"
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs, {isa}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default="/tmp/distill-data-bench")
    parser.add_argument("--train-steps", type=int, default=400)
    parser.add_argument("--cases", default="png32-20k,jpeg224-2k")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    for name, (kind, count, _) in FOLDERS.items():
        path = os.path.join(args.root, name)
        if not os.path.isdir(path):
            print(f"generating {path} ({count} images, untimed)", file=sys.stderr)
            subprocess.run([sys.executable, PEER, "generate", "--kind", kind, "--count", str(count), "--out", path], check=True)
    print(f"machine: {cpu()}; {platform.platform()}; Python {platform.python_version()}")
    rows = []
    for name in args.cases.split(","):
        path = os.path.join(args.root, name)
        ours, theirs = [], []
        for repeat in range(args.repeats):
            evict(path)
            distill = last_json([BENCH, "--case", "stream-epoch", "--folder", path, "--iterations", "1"])
            evict(path)
            torch = last_json([sys.executable, PEER, "epoch", "--folder", path, "--workers", "2"])
            ours.append(distill["images"] / distill["seconds"][0])
            theirs.append(torch["images"] / torch["seconds"][0])
            print(f"  {name} repeat {repeat + 1}: Distill {ours[-1]:,.0f} images/s, PyTorch {theirs[-1]:,.0f} images/s", file=sys.stderr)
        ratios = [a / b for a, b in zip(ours, theirs)]
        rows.append((FOLDERS[name][2], statistics.median(ours), statistics.median(theirs), statistics.median(ratios), min(ratios), max(ratios)))
    print("| folder, one cold epoch | Distill images/s | PyTorch images/s | ratio | ratio range |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, a, b, ratio, low, high in rows:
        print(f"| {label} | {a:,.0f} | {b:,.0f} | **{ratio:.2f}** | {low:.2f}–{high:.2f} |")
    if not args.no_memory:
        path = os.path.join(args.root, "png32-100k")
        evict(path)
        result = last_json([BENCH, "--case", "stream-train", "--folder", path, "--iterations", str(args.train_steps)])
        print(f"stream-train over {result['images']:,} images: scan {result['scan_seconds']:.1f} s, channel statistics "
              f"{result['statistics_seconds']:.1f} s, {result['steps']} steps {result['train_seconds']:.1f} s, "
              f"peak resident memory {result['peak_rss'] / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
