#!/usr/bin/env python3
"""Checks ONNX files Distill wrote with the reference tools: onnx.checker (full check, with
shape inference) and onnxruntime's outputs against Distill's.

usage: check_onnx.py MODEL.onnx INPUT.npy EXPECTED.npy [MODEL.onnx INPUT.npy EXPECTED.npy ...]

INPUT may also be a .json object of several inputs by name (a text model's input_ids,
attention_mask, ...: nested lists, given the element type the graph declares); the graph is
fed those of its inputs, and EXPECTED is compared with its first output.

Prints one JSON line per model: {"model", "opset", "ops", "max_abs_diff", "shape"}; exits 1
when a check fails. Used by Tests/ModelFormatsTests/ONNXTests.swift (make test installs
onnx and onnxruntime with pip).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main(args):
    if len(args) % 3 != 0 or not args:
        sys.exit(__doc__)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    # Compare the graph as written: no fusions that change rounding.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for i in range(0, len(args), 3):
        path, inputs, expected = args[i:i + 3]
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        if inputs.endswith(".json"):
            with open(inputs) as f:
                given = json.load(f)
            types = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}
            feeds = {i.name: np.array(given[i.name], dtype=types[i.type]) for i in session.get_inputs()}
        else:
            feeds = {session.get_inputs()[0].name: np.load(inputs)}
        y = session.run(None, feeds)[0]
        want = np.load(expected)
        print(json.dumps({
            "model": path,
            "opset": model.opset_import[0].version,
            "ops": sorted({n.op_type for n in model.graph.node}),
            "shape": list(y.shape),
            "max_abs_diff": float(np.abs(y - want).max()) if y.shape == want.shape else None,
        }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
