#!/usr/bin/env python3
"""Checks a quantized model Distill exported in QDQ form (`distill export RUN-int8 --out
model.onnx`) with the reference tools: onnx.checker (full check, with shape inference), then
onnxruntime on the Fashion-MNIST test images of the classes LOW-HIGH, preprocessed as the
file's metadata says (pixels / 255, then (x - mean) / std).

usage: check_qdq.py MODEL.onnx FASHION_MNIST_DIR LOW-HIGH OUT_DIR [COUNT]

onnxruntime runs the graph twice on one thread: optimized (its QDQ fusions into integer
kernels, what a deployment runs) and as written (no fusions: float operators between the
quantize-dequantize pairs). Writes OUT_DIR/inputs.npy (the first COUNT test images, default
512, preprocessed), OUT_DIR/optimized.npy and OUT_DIR/as_written.npy (their logits), and
prints one JSON line: {"ops", "count", "accuracy", "accuracy_as_written"}. Used by
Tests/DistillCLITests/CommandLineTests+QuantizedExport.swift.
"""
import gzip
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main(args):
    if len(args) not in (4, 5):
        sys.exit(__doc__)
    path, folder, classes, out = args[:4]
    count = int(args[4]) if len(args) == 5 else 512
    low, high = (int(c) for c in classes.split("-"))
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    mean = np.array([float(v) for v in meta["distill.input.mean"].split(",")], dtype=np.float32)
    std = np.array([float(v) for v in meta["distill.input.std"].split(",")], dtype=np.float32)
    images = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")).astype(np.int64)
    keep = (labels >= low) & (labels <= high)
    x = images[keep].astype(np.float32)[:, None, :, :] / np.float32(255)
    x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    y = labels[keep] - low
    results = {}
    for name, level in [("optimized", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                        ("as_written", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)]:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = level
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        logits = np.concatenate([session.run(None, {session.get_inputs()[0].name: x[i:i + 1000]})[0]
                                 for i in range(0, len(x), 1000)])
        results[name] = float((logits.argmax(axis=1) == y).mean())
        np.save(os.path.join(out, name + ".npy"), logits[:count])
    np.save(os.path.join(out, "inputs.npy"), np.ascontiguousarray(x[:count]))
    print(json.dumps({"ops": sorted({n.op_type for n in model.graph.node}), "count": int(len(x)),
                      "accuracy": results["optimized"], "accuracy_as_written": results["as_written"]}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
