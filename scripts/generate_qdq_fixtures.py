#!/usr/bin/env python3
"""Regenerates the fixtures for importing quantized (QDQ) ONNX models
(Tests/ModelFormatsTests/Fixtures/onnx):

- quantization.json: small graphs of QuantizeLinear and DequantizeLinear built with
  onnx.helper (per tensor and per axis, uint8 and int8, with and without a zero point,
  ties that round to even, values that saturate; opsets 13 and 19), each ending in float,
  with its input and onnxruntime's output (graph optimisations off, so that the operators
  run as written).
- cnn_student_qdq.onnx: the zoo cnn-student (Fixtures/cnn-student.safetensors) exported by
  torch and quantized by onnxruntime's `quantize_static` in QDQ form: weights int8 per
  output channel, activations uint8 per tensor (min-max calibration on 256 Fashion-MNIST
  training images). cnn_student_qdq.json: 16 normalised test images, and the logits of
  onnxruntime with graph optimisations off (Q/DQ run as written: the reference Distill must
  match) and fully on (onnxruntime's integer kernels, QLinearConv and friends).

Needs torch, onnx, onnxruntime, safetensors and numpy; run from the repository root:
    python3 scripts/generate_qdq_fixtures.py
"""
import base64
import gzip
import json
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_models  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")
FIXTURES = os.path.join(ROOT, "Tests", "ModelFormatsTests", "Fixtures")
OUT = os.path.join(FIXTURES, "onnx")
MEAN, STD = 0.2860, 0.3530
rng = np.random.default_rng(7)


def run(model_bytes, x, optimize=False):
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = (onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def tensor_json(a):
    return {"shape": list(a.shape), "data": [float(v) for v in a.reshape(-1)]}


cases = []


def case(name, nodes, initializers, x, opset, output_shape=None):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape or x.shape))], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 19 else 9
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    y = run(data, x)
    cases.append({"name": name, "model": base64.b64encode(data).decode(), "input": tensor_json(x), "output": tensor_json(y),
                  "gradients": []})


def init(name, array, dtype):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


# Values that hit ties (x/scale = k + 0.5), saturate both ends, and ordinary ones.
x = np.concatenate([np.arange(-6, 6, 0.25, dtype=np.float32) * 0.1, np.array([-100, 100, 0.05, -0.05, 0.15], np.float32)])
x = x.reshape(1, 1, 1, -1).repeat(3, axis=1).astype(np.float32) * np.array([1, 2, 0.5], np.float32).reshape(1, 3, 1, 1)
for opset in (13, 19):
    for dtype, zp in ((np.uint8, 128), (np.uint8, 3), (np.int8, 0), (np.int8, -5)):
        tag = f"{np.dtype(dtype).name}-zp{zp}-opset{opset}"
        case(f"qdq-tensor-{tag}",
             [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])],
             [init("s", 0.1, np.float32), init("z", zp, dtype)], x, opset)
        scales = np.array([0.05, 0.1, 0.2], np.float32)
        zps = np.array([zp, zp // 2, 0], dtype)
        case(f"qdq-axis-{tag}",
             [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1)],
             [init("s", scales, np.float32), init("z", zps, dtype)], x, opset)
    # No zero point: uint8, zero 0 (negative values saturate at 0).
    case(f"qdq-no-zero-point-opset{opset}",
         [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])],
         [init("s", 0.02, np.float32)], x, opset)
    # A weight stored as int8, dequantized per output channel (axis 0) and used by Conv.
    w = rng.integers(-128, 128, size=(4, 3, 3, 3)).astype(np.int8)
    case(f"dequantized-conv-weight-opset{opset}",
         [helper.make_node("DequantizeLinear", ["w", "ws"], ["wf"], axis=0), helper.make_node("Conv", ["x", "wf"], ["y"], pads=[1, 1, 1, 1])],
         [init("w", w, np.int8), init("ws", [0.01, 0.02, 0.005, 0.03], np.float32)],
         rng.normal(size=(2, 3, 5, 5)).astype(np.float32), opset, output_shape=(2, 4, 5, 5))

with open(os.path.join(OUT, "quantization.json"), "w") as f:
    json.dump({"cases": cases}, f)


# The zoo cnn-student, quantized by onnxruntime.
def idx_images(path):
    with gzip.open(path) as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, 1, rows, cols)


fashion = "/usr/share/datasets/fashion-mnist"
train = ((idx_images(f"{fashion}/train-images-idx3-ubyte.gz")[:256] / 255.0 - MEAN) / STD).astype(np.float32)
test = ((idx_images(f"{fashion}/t10k-images-idx3-ubyte.gz")[:16] / 255.0 - MEAN) / STD).astype(np.float32)

model = zoo_models.cnn_student()
model.load_state_dict(load_file(os.path.join(FIXTURES, "cnn-student.safetensors")))
model.eval()
with tempfile.TemporaryDirectory() as tmp:
    float_path, qdq_path = os.path.join(tmp, "float.onnx"), os.path.join(OUT, "cnn_student_qdq.onnx")
    torch.onnx.export(model, torch.from_numpy(test[:1]), float_path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13, dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": train[i:i + 32]} for i in range(0, len(train), 32)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(float_path, qdq_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    data = open(qdq_path, "rb").read()
    onnx.checker.check_model(onnx.load(qdq_path))
    as_written, optimized = run(data, test), run(data, test, optimize=True)
    float_logits = run(open(float_path, "rb").read(), test)
print("quantized against float: max |Δ|", float(np.abs(as_written - float_logits).max()),
      "; onnxruntime optimised against as written:", float(np.abs(optimized - as_written).max()),
      "; argmax agreement", float((optimized.argmax(1) == as_written.argmax(1)).mean()))
with open(os.path.join(OUT, "cnn_student_qdq.json"), "w") as f:
    json.dump({"input": tensor_json(test), "as_written": tensor_json(as_written), "optimized": tensor_json(optimized),
               "float": tensor_json(float_logits)}, f)
print(len(cases), "cases; wrote", OUT)
