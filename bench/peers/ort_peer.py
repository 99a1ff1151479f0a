#!/usr/bin/env python3
"""The onnxruntime side of the inference benchmarks: runs a model that DistillBench exported
(`DistillBench --case infer-resnet20-c3 --export-onnx model.onnx`: the same weights as the
timed case) in onnxruntime, timed as DistillBench times infer-* cases (one warm-up step, then
per-step wall time; at batch 1 a step is 100 calls and the time is per call). One JSON line.

    python3 bench/peers/ort_peer.py --model model.onnx --case infer-resnet20-c3-b256 --threads 2

Threads as Distill's: intra_op_num_threads = --threads, inter_op_num_threads = 1, sequential
execution; graph optimisations at their default (all), as a deployment would run. With
OMP_WAIT_POLICY=PASSIVE in the environment (the driver's --passive-peer-threads) its workers
do not spin, as PyTorch's OpenMP threads then do not.
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort

from case_names import parse_model_case


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="the exported .onnx file")
    parser.add_argument("--case", required=True, help="infer-MODEL[-cC][-bB], for the input shape and batch")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rss", action="store_true", help="add the peak resident memory of this process")
    args = parser.parse_args()
    _, _, options, batch = parse_model_case(args.case, args.batch)
    channels, size = options.get("input_channels", 1), options.get("input_size", 28)

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = args.threads
    settings.inter_op_num_threads = 1
    settings.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":  # the driver's --passive-peer-threads: no spinning workers
        settings.add_session_config_entry("session.intra_op.allow_spinning", "0")
    start = time.perf_counter()
    session = ort.InferenceSession(args.model, settings, providers=["CPUExecutionProvider"])
    prepare_seconds = time.perf_counter() - start  # graph optimisation and weight packing, once
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, channels, size, size), dtype=np.float32)
    calls = 100 if batch == 1 else 1

    def step():
        total = 0.0
        for _ in range(calls):
            total += float(session.run(None, {name: x})[0][:, 0].sum())
        return total

    step()  # warm-up
    seconds = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        step()
        seconds.append((time.perf_counter() - start) / calls)
    result = {"case": args.case, "seconds": seconds, "onnxruntime": ort.__version__, "prepare_seconds": prepare_seconds}
    if args.rss:
        with open("/proc/self/status") as f:
            result["peak_rss"] = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
