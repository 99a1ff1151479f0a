#!/usr/bin/env bash
# What a served teacher's partial answers cost in accuracy (docs/served-teachers.md).
#
# A cnn-teacher trained on Fashion-MNIST (all 60,000 training images, one epoch), exported to
# ONNX and served by scripts/oip_test_server.py through onnxruntime, teaches cnn-student students
# from its full logits, top-5 probabilities, top-1 probability and labels only, 3 seeds each,
# beside students trained on the true labels (`distill train`). Every student run: the first
# TRAIN training images (an IDX folder of them beside the 10,000 test images, so the
# preprocessing is the default data's; 10% held out for validation), EPOCHS epochs, Distill's
# defaults (kd, T = 4, α = 0.9). Prints one table row per kind: median and range of the final
# model's test accuracy over the seeds.
#
#   scripts/served_answers_accuracy.sh [DISTILL] [WORK] [EPOCHS] [TRAIN]
#
# DISTILL defaults to .build/release/distill, WORK to /tmp/served-answers (a teacher already
# trained there, WORK/teacher, is reused), EPOCHS to 5, TRAIN to 10000. Needs python3 with
# numpy and onnxruntime, and the Fashion-MNIST files (Debian dataset-fashion-mnist).
set -euo pipefail
distill=$(realpath "${1:-.build/release/distill}")
work=${2:-/tmp/served-answers}
epochs=${3:-5}
train=${4:-10000}
source=/usr/share/datasets/fashion-mnist
script=$(dirname "$(realpath "$0")")/oip_test_server.py
mkdir -p "$work"
cd "$work"

if [ ! -f teacher/model.safetensors ]; then
    "$distill" train --model cnn-teacher --epochs 1 --seed 0 --quiet --out teacher
fi
[ -f teacher.onnx ] || "$distill" export teacher --out teacher.onnx >/dev/null

# The first $train training images and every test image, as an IDX folder.
mkdir -p data
python3 -c '
import gzip, struct, sys
source, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, header, width in [("train-images-idx3-ubyte", 16, 784), ("train-labels-idx1-ubyte", 8, 1)]:
    raw = gzip.open(f"{source}/{name}.gz").read()
    open(f"{target}/{name}", "wb").write(raw[:4] + struct.pack(">I", count) + raw[8:header] + raw[header:header + count * width])
for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
    open(f"{target}/{name}", "wb").write(gzip.open(f"{source}/{name}.gz").read())
' "$source" data "$train"

accuracy() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['student']['top1'] * 100)" "$1/evaluation.json"; }

server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; fi; }
trap stop_server EXIT
start_server() {
    rm -f port
    python3 "$script" --onnx teacher.onnx --answers "$1" --port-file port &
    server_pid=$!
    for _ in $(seq 300); do [ -f port ] && break; sleep 0.1; done
    port=$(cat port)
}

: > results.tsv
for seed in 0 1 2; do
    "$distill" train --model cnn-student --data data --epochs "$epochs" --seed "$seed" --quiet --out "labels-true-$seed" >/dev/null
    echo -e "true labels (distill train)\t$seed\t$(accuracy "labels-true-$seed")" >> results.tsv
done
for kind in logits top-5 top-1 label; do
    case $kind in logits) served=logits ;; label) served=label ;; *) served=probabilities ;; esac
    start_server "$served"
    for seed in 0 1 2; do
        # Each kind is asked once (seed 0); the other seeds read its kept answers.
        "$distill" distill --teacher "http://127.0.0.1:$port/v2/models/teacher" --teacher-answers "$kind" --student cnn-student \
            --data data --epochs "$epochs" --seed "$seed" --query-batch 250 --concurrency 2 --cache-directory cache --quiet \
            --out "$kind-$seed" >/dev/null
        echo -e "$kind\t$seed\t$(accuracy "$kind-$seed")" >> results.tsv
    done
    stop_server
done
echo "teacher: $(python3 -c "import json; print(json.load(open('teacher/evaluation.json'))['student']['top1'] * 100)")"
python3 -c '
import collections, statistics
rows = collections.OrderedDict()
for line in open("results.tsv"):
    kind, seed, accuracy = line.rstrip("\n").split("\t")
    rows.setdefault(kind, []).append(float(accuracy))
print("| teacher answers | test accuracy, median (range) | seeds 0, 1, 2 |")
print("| --- | ---: | --- |")
for kind, values in rows.items():
    seeds = ", ".join("%.2f" % v for v in values)
    print(f"| {kind} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) | {seeds} |")
'
