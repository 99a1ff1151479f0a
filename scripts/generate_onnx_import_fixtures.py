#!/usr/bin/env python3
"""Regenerates the fixtures for importing ONNX models from other projects
(Tests/ModelFormatsTests/Fixtures/onnx):

- operators.json: one small graph per case, built with onnx.helper at the operator set it
  names (11 to 20, so that attributes moved to inputs are read both ways), its input and
  onnxruntime's output. Cases cover Resize (every interpolation mode and coordinate
  transformation Distill runs), Pad, Split, Expand, Where, Pow, Sqrt, HardSigmoid,
  HardSwish, PRelu, Clip, Squeeze/Unsqueeze, the reductions, Slice with negative steps,
  ConstantOfShape, the comparisons, LayerNormalization, and Conv and pooling with asymmetric padding. `gradients` names the initializers whose gradients
  the Swift test checks by finite differences, beside the input's.
- small_cnn_legacy.onnx (TorchScript exporter, opset 11) and small_cnn_dynamo.onnx
  (torch.export-based exporter, opset 20): a small CNN with Hardswish, Hardsigmoid, PReLU,
  bilinear and nearest interpolation, reflect/replicate/constant padding, split, where,
  pow and sqrt, exported with batch, height and width as dynamic axes.
  small_cnn_input_AxB.npy / small_cnn_expected_AxB.npy: inputs at two image sizes and
  PyTorch's outputs (checked here against onnxruntime on both files).

Needs torch, onnx, onnxscript, onnxruntime and numpy; run from the repository root:
    python3 scripts/generate_onnx_import_fixtures.py [--operators-only]
(--operators-only rewrites operators.json alone, leaving the exported CNNs as they are.)
"""
import base64
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelFormatsTests", "Fixtures", "onnx")
rng = np.random.default_rng(0)
cases = []


def floats(*values):
    return np.array(values, dtype=np.float32)


def ints(*values):
    return np.array(values, dtype=np.int64)


def case(name, opset, nodes, initializers=None, shape=(2, 3, 4, 6), dims=None, gradients=(), output="y", smooth=True):
    """nodes read 'x' ([batch, ...shape[1:]]) and write `output`; initializers: {name: array}. A case that is not
    `smooth` (integer casts: steps in x) is left out of the Swift finite-difference check."""
    inits = [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()]
    dims = dims or ["batch"] + list(shape[1:])
    graph = helper.make_graph(nodes, name.replace(" ", "_"), [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="distill-fixtures")
    model.ir_version = 7
    x = np.round(rng.standard_normal(shape), 4).astype(np.float32)  # short in JSON, and exactly what onnxruntime saw
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": x})[0].astype(np.float32)
    # The output's shape as onnxruntime found it (batch symbolic), so that onnx.checker accepts the file.
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch"] + list(y.shape[1:])))
    onnx.checker.check_model(model, full_check=True)
    cases.append({"name": name, "opset": opset, "model": base64.b64encode(model.SerializeToString()).decode(),
                  "input": {"shape": list(x.shape), "data": [float(f"{v:.4f}") for v in x.reshape(-1)]},
                  "output": {"shape": list(y.shape), "data": [float(f"{v:.8g}") for v in y.reshape(-1)]},
                  "gradients": list(gradients), **({} if smooth else {"smooth": False})})


def node(op, inputs, outputs=("y",), **attributes):
    return helper.make_node(op, list(inputs), list(outputs), **attributes)


def resize(name, opset, scales=None, sizes=None, shape=(2, 3, 4, 6), **attributes):
    inits = {"roi": floats()}
    inputs = ["x", "roi" if opset < 13 else ""]
    if scales is not None:
        inits["scales"] = floats(*scales)
        inputs.append("scales")
    else:
        if opset < 13:
            inits["no_scales"] = floats()
            inputs.append("no_scales")
        else:
            inputs.append("")
        inits["sizes"] = ints(*sizes)
        inputs.append("sizes")
    case(name, opset, [node("Resize", inputs, **attributes)], inits, shape=shape)


def operator_cases():
    # Resize: nearest.
    resize("resize nearest asymmetric floor x2 opset 11", 11, scales=[1, 1, 2, 2], mode="nearest",
           coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    resize("resize nearest half_pixel round_prefer_floor x1.5 opset 13", 13, scales=[1, 1, 1.5, 1.5], mode="nearest")
    resize("resize nearest round_prefer_ceil sizes opset 13", 13, sizes=[2, 3, 8, 9], mode="nearest", nearest_mode="round_prefer_ceil")
    resize("resize nearest align_corners ceil down opset 18", 18, scales=[1, 1, 0.6, 0.5], mode="nearest",
           coordinate_transformation_mode="align_corners", nearest_mode="ceil")
    resize("resize nearest tf_half_pixel_for_nn opset 11", 11, scales=[1, 1, 2.5, 0.5], mode="nearest",
           coordinate_transformation_mode="tf_half_pixel_for_nn")
    # Resize: linear.
    resize("resize linear half_pixel x2 opset 11", 11, scales=[1, 1, 2, 2], mode="linear")
    resize("resize linear pytorch_half_pixel sizes to one row opset 13", 13, sizes=[2, 3, 1, 4], mode="linear",
           coordinate_transformation_mode="pytorch_half_pixel")
    resize("resize linear align_corners sizes opset 18", 18, sizes=[2, 3, 7, 11], mode="linear", coordinate_transformation_mode="align_corners")
    resize("resize linear asymmetric down opset 20", 20, scales=[1, 1, 0.5, 0.75], mode="linear", coordinate_transformation_mode="asymmetric")
    resize("resize linear half_pixel_symmetric x1.7 opset 19", 19, scales=[1, 1, 1.7, 1.3], mode="linear",
           coordinate_transformation_mode="half_pixel_symmetric")
    resize("resize linear axes not_larger opset 18", 18, sizes=[7, 10], mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger")
    resize("resize linear axes not_smaller opset 20", 20, sizes=[7, 10], mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_smaller")
    # Resize: cubic.
    resize("resize cubic half_pixel x2 opset 13", 13, scales=[1, 1, 2, 2], mode="cubic")
    resize("resize cubic exclude_outside a=-0.5 opset 18", 18, scales=[1, 1, 1.6, 0.8], mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5)

    # Pad: an attribute before opset 11, inputs after; axes from 18, wrap from 19.
    case("pad constant attribute opset 10", 10, [node("Pad", ["x"], mode="constant", pads=[0, 0, 1, 2, 0, 0, 2, 0], value=0.5)])
    case("pad constant input opset 11", 11, [node("Pad", ["x", "pads", "value"])], {"pads": ints(0, 0, 1, 2, 0, 0, 2, 1), "value": floats(-1.5)})
    case("pad reflect opset 11", 11, [node("Pad", ["x", "pads"], mode="reflect")], {"pads": ints(0, 0, 2, 1, 0, 0, 3, 3)})
    case("pad edge opset 13", 13, [node("Pad", ["x", "pads"], mode="edge")], {"pads": ints(0, 1, 3, 0, 0, 0, 1, 2)})
    case("pad crop and pad constant opset 13", 13, [node("Pad", ["x", "pads"])], {"pads": ints(0, 0, -1, 2, 0, 0, 1, -3)})
    case("pad reflect axes opset 18", 18, [node("Pad", ["x", "pads", "", "axes"], mode="reflect")], {"pads": ints(1, 2, 3, 0), "axes": ints(-1, 2)})
    case("pad wrap opset 19", 19, [node("Pad", ["x", "pads"], mode="wrap")], {"pads": ints(0, 0, 2, 3, 0, 0, 1, 4)})

    # Split: sizes as an attribute (11), as an input (13), num_outputs (18), equal parts; the
    # parts are put back in another order so that every output is used.
    parts = ["a", "b", "c"]
    join = node("Concat", ["c", "a", "b"], axis=3)
    case("split attribute opset 11", 11, [node("Split", ["x"], parts, axis=3, split=[1, 2, 3]), join])
    case("split input opset 13", 13, [node("Split", ["x", "split"], parts, axis=-1), join], {"split": ints(3, 1, 2)})
    case("split equal parts opset 13", 13, [node("Split", ["x"], parts, axis=3), join])
    case("split num_outputs uneven opset 18", 18, [node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), node("Concat", ["b", "a"], axis=1)])

    # Expand, Where, comparisons, Pow, Sqrt, ConstantOfShape.
    case("expand both ways opset 13", 13, [node("Expand", ["x", "shape"])], {"shape": ints(1, 3, 4, 5)}, shape=(2, 1, 4, 1))
    case("where greater opset 11", 11, [node("Greater", ["x", "zero"], ["mask"]), node("Mul", ["x", "tenth"], ["small"]),
                                        node("Where", ["mask", "x", "small"])], {"zero": floats(0), "tenth": floats(0.1)})
    case("where boolean initializer broadcast opset 16", 16, [node("Where", ["mask", "x", "other"])],
         {"mask": np.array([[True], [False], [True], [False]]), "other": rng.standard_normal(6).astype(np.float32)},
         gradients=["other"])
    case("where less and equal opset 13", 13, [node("LessOrEqual", ["x", "zero"], ["m1"]), node("Equal", ["m1", "m1"], ["m2"]),
                                               node("Where", ["m1", "x", "zero"], ["w"]), node("Where", ["m2", "w", "x"])], {"zero": floats(0)})
    case("pow and sqrt opset 13", 13, [node("Mul", ["x", "x"], ["x2"]), node("Add", ["x2", "one"], ["r"]), node("Sqrt", ["r"], ["s"]),
                                       node("Pow", ["s", "exponents"], ["p"]), node("Pow", ["x", "three"], ["q"]), node("Add", ["p", "q"])],
         {"one": floats(1), "exponents": floats(0.5, 1.5, 2, 3, -1, 0.25), "three": floats(3)}, gradients=["exponents"])
    case("constant of shape opset 11", 11, [node("Shape", ["x"], ["s"]),
                                            helper.make_node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
                                            node("Mul", ["x", "c"])])

    # Activations.
    case("hard sigmoid defaults opset 11", 11, [node("HardSigmoid", ["x"])])
    case("hard sigmoid alpha beta opset 20", 20, [node("HardSigmoid", ["x"], alpha=0.4, beta=0.3)])
    case("hard swish opset 14", 14, [node("HardSwish", ["x"])])
    case("prelu per channel opset 11", 11, [node("PRelu", ["x", "slope"])], {"slope": floats(0.25, -0.5, 1.5).reshape(3, 1, 1)},
         gradients=["slope"])
    case("prelu one slope opset 20", 20, [node("PRelu", ["x", "slope"])], {"slope": floats(0.1)}, gradients=["slope"])

    # Operators whose attributes became inputs between opsets 11 and 20.
    case("clip attributes opset 10", 10, [node("Clip", ["x"], min=-0.5, max=0.8)])
    case("clip min input only opset 11", 11, [node("Clip", ["x", "low"])], {"low": floats(-0.3)})
    case("clip max input only opset 13", 13, [node("Clip", ["x", "", "high"])], {"high": floats(0.4)})
    case("squeeze unsqueeze attributes opset 11", 11, [node("ReduceMean", ["x"], ["m"], axes=[2], keepdims=1),
                                                       node("Squeeze", ["m"], ["s"], axes=[2]), node("Unsqueeze", ["s"], axes=[1, -1])])
    case("squeeze unsqueeze inputs opset 13", 13, [node("ReduceSum", ["x", "axis2"], ["m"], keepdims=1),
                                                   node("Squeeze", ["m", "axis2"], ["s"]), node("Unsqueeze", ["s", "axes"])],
         {"axis2": ints(2), "axes": ints(1, -1)})
    case("reduce sum attribute opset 11", 11, [node("ReduceSum", ["x"], axes=[1, 3], keepdims=0)])
    case("reduce sum input noop opset 13", 13, [node("ReduceSum", ["x", "none"], noop_with_empty_axes=1)], {"none": ints()})
    case("reduce mean attribute opset 11", 11, [node("ReduceMean", ["x"], axes=[-1], keepdims=1)])
    case("reduce mean input opset 18", 18, [node("ReduceMean", ["x", "axes"], keepdims=0)], {"axes": ints(2, 3)})
    case("reduce max input opset 20", 20, [node("ReduceMax", ["x", "axes"])], {"axes": ints(1)})
    case("reduce max all opset 18", 18, [node("ReduceMax", ["x"], keepdims=1)])
    case("slice negative steps opset 13", 13, [node("Slice", ["x", "starts", "ends", "axes", "steps"])],
         {"starts": ints(-1, 4), "ends": ints(-9223372036854775807, 0), "axes": ints(3, 2), "steps": ints(-2, -1)})
    case("softmax flattens trailing axes opset 11", 11, [node("Softmax", ["x"], axis=2)])
    case("softmax one axis opset 13", 13, [node("Softmax", ["x"], axis=2)])
    case("dropout training mode off opset 13", 13, [node("Dropout", ["x", "ratio", "training"])],
         {"ratio": np.array(0.5, dtype=np.float32), "training": np.array(False)})

    # Asymmetric padding (explicit pads, and auto_pad SAME with an odd total) in Conv and pooling.
    weights = {"w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32), "b": floats(0.1, -0.2, 0.3, 0)}
    case("conv asymmetric pads opset 11", 11, [node("Conv", ["x", "w", "b"], pads=[0, 1, 2, 0])], weights, gradients=["w", "b"])
    case("conv auto_pad same_upper stride 2 opset 13", 13, [node("Conv", ["x", "w", "b"], auto_pad="SAME_UPPER", strides=[2, 2])], weights,
         gradients=["w", "b"])
    case("conv auto_pad same_lower opset 18", 18, [node("Conv", ["x", "w"], auto_pad="SAME_LOWER", kernel_shape=[2, 4])],
         {"w": (rng.standard_normal((2, 3, 2, 4)) * 0.3).astype(np.float32)}, gradients=["w"])
    case("max pool asymmetric pads opset 11", 11, [node("MaxPool", ["x"], kernel_shape=[3, 3], pads=[1, 0, 0, 1], strides=[2, 2])])
    case("max pool auto_pad same_upper opset 13", 13, [node("MaxPool", ["x"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2])])
    case("average pool asymmetric pads counted opset 19", 19,
         [node("AveragePool", ["x"], kernel_shape=[2, 3], pads=[1, 1, 0, 0], count_include_pad=1)])
    # Added for issue 15 (text encoders; appended, so the cases above keep their values).
    case("layer normalization last two axes opset 17", 17, [node("LayerNormalization", ["x", "scale", "bias"], axis=-2, epsilon=1e-3)],
         {"scale": (rng.standard_normal((4, 6)) + 1).astype(np.float32), "bias": rng.standard_normal((4, 6)).astype(np.float32)},
         gradients=["scale", "bias"])
    case("layer normalization broadcast scale no bias opset 17", 17, [node("LayerNormalization", ["x", "scale"])],
         {"scale": floats(1.5)}, gradients=["scale"])
    # Integer and boolean values as BERT exports build attention masks (appended likewise).
    case("and or xor not on comparisons opset 13", 13, [
        node("Greater", ["x", "zero"], ["a"]), node("Less", ["x", "half"], ["b"]), node("And", ["a", "b"], ["c"]),
        node("Or", ["a", "mask"], ["d"]), node("Xor", ["c", "d"], ["e"]), node("Not", ["e"], ["f"]),
        node("Cast", ["f"], ["g"], to=TensorProto.FLOAT), node("Mul", ["g", "x"], ["y"])],
        {"zero": floats(0), "half": floats(0.5), "mask": np.array([True, False, False, True, True, False])}, smooth=False)
    case("integer broadcast arithmetic and logic opset 13", 13, [
        node("Mul", ["x", "three"], ["x3"]), node("Cast", ["x3"], ["i"], to=TensorProto.INT64),
        node("Add", ["i", "column"], ["s"]), node("Mul", ["s", "row"], ["p"]), node("Sub", ["p", "i"], ["d"]),
        node("Greater", ["d", "zero_i"], ["positive"]), node("Equal", ["i", "zero_i"], ["zeros"]), node("Or", ["positive", "zeros"], ["keep"]),
        node("Where", ["keep", "d", "row"], ["w"]), node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)],
        {"three": floats(3), "column": ints(1, -2, 3, 0).reshape(4, 1), "row": ints(2, -1, 1, 3, 0, -2), "zero_i": ints(0)}, smooth=False)
    case("range integers and floats opset 11", 11, [
        node("Shape", ["x"], ["shape"]), node("Gather", ["shape", "last"], ["n"], axis=0),
        node("Range", ["zero_i", "n", "one_i"], ["positions"]), node("Cast", ["positions"], ["p"], to=TensorProto.FLOAT),
        node("Range", ["start", "limit", "delta"], ["r"]), node("Add", ["x", "p"], ["xp"]), node("Mul", ["xp", "r"], ["y"])],
        {"zero_i": np.array(0, dtype=np.int64), "last": np.array(3, dtype=np.int64), "one_i": np.array(1, dtype=np.int64),
         "start": np.array(1.5, dtype=np.float32), "limit": np.array(-1.5, dtype=np.float32), "delta": np.array(-0.5, dtype=np.float32)})
    case("gather integers of rank 2 by a matrix of indices opset 13", 13, [
        node("Mul", ["x", "three"], ["x3"]), node("Cast", ["x3"], ["i"], to=TensorProto.INT64),
        node("Gather", ["i", "indices"], ["g"], axis=3), node("Cast", ["g"], ["y"], to=TensorProto.FLOAT)],
        {"three": floats(3), "indices": ints(0, 5, -1, 2).reshape(2, 2)}, smooth=False)
    case("gather nd mask of rank 2 by broadcast index pairs opset 13", 13, [
        node("Greater", ["x", "zero"], ["positive"]), node("Shape", ["x"], ["shape"]), node("Gather", ["shape", "first"], ["n"], axis=0),
        node("Range", ["zero_i", "n", "one_i"], ["rows"]), node("Unsqueeze", ["rows", "axes_1_2"], ["r"]),
        node("Max", ["r", "columns"], ["wide"]), node("Shape", ["wide"], ["wide_shape"]), node("Expand", ["r", "wide_shape"], ["re"]),
        node("Unsqueeze", ["re", "last"], ["r1"]), node("Unsqueeze", ["wide", "last"], ["c1"]), node("Concat", ["r1", "c1"], ["pairs"], axis=-1),
        node("Reshape", ["positive", "flat"], ["p2"]), node("GatherND", ["p2", "pairs"], ["picked"]),
        node("Cast", ["picked"], ["g"], to=TensorProto.FLOAT), node("Unsqueeze", ["g", "second"], ["g4"]), node("Min", ["g4", "x", "half"], ["y"])],
        {"zero": floats(0), "first": np.array(0, dtype=np.int64), "zero_i": np.array(0, dtype=np.int64), "one_i": np.array(1, dtype=np.int64),
         "axes_1_2": ints(1, 2), "columns": ints(0, 3, 5, 1, 7, 2).reshape(1, 1, 6), "last": ints(-1), "flat": ints(-1, 72),
         "second": ints(1), "half": floats(0.5)}, smooth=False)
    case("gather nd batch dims with negative indices opset 13", 13, [
        node("Shape", ["x"], ["shape"]), node("Gather", ["shape", "first_axis"], ["n"], axis=0), node("Concat", ["n", "two_two"], ["target"], axis=0),
        node("Expand", ["pairs", "target"], ["indices"]), node("GatherND", ["x", "indices"], batch_dims=1)],
         {"first_axis": ints(0), "two_two": ints(2, 2), "pairs": ints(0, -1, -3, 2).reshape(1, 2, 2)})
    case("max min of three broadcast opset 13", 13, [node("Max", ["x", "low", "wave"], ["m"]), node("Min", ["m", "high"], ["y"])],
         {"low": floats(-0.5), "wave": floats(0.1, -0.2, 0.3, 0.0, -0.1, 0.2), "high": floats(0.9, 1.2, 0.7, 1.0).reshape(4, 1)})
    case("reduce l2 attribute opset 13", 13, [node("ReduceL2", ["x"], axes=[1, 3], keepdims=1)])
    case("reduce l2 input opset 18", 18, [node("ReduceL2", ["x", "axes"], keepdims=0)], {"axes": ints(-1)})


class SmallCNN(nn.Module):
    """A MobileNetV3-flavoured network over the operators PP-OCR-style models export."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.Hardswish()
        self.conv2 = nn.Conv2d(8, 8, 3, groups=8)
        self.prelu = nn.PReLU(8)
        self.se_reduce = nn.Conv2d(8, 4, 1)
        self.se_expand = nn.Conv2d(4, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.conv3 = nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = F.pad(x, (1, 2, 1, 0), mode="reflect")
        x = self.prelu(self.conv2(x))
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        s = F.adaptive_avg_pool2d(x, 1)
        x = x * self.gate(self.se_expand(F.relu(self.se_reduce(s))))
        x = F.pad(x, (1, 1, 2, 2), mode="replicate")
        x = F.interpolate(x, scale_factor=0.5, mode="nearest")
        a, b = torch.split(x, [3, 5], dim=1)
        x = torch.cat([torch.sqrt(a * a + 1.0), torch.where(b > 0, b, b.pow(2) * 0.1)], dim=1)
        x = F.pad(x, (0, 1, 0, 1), value=0.25)
        x = self.conv3(x)
        return self.head(x.mean(dim=(2, 3)))


def torch_cases():
    torch.manual_seed(0)
    model = SmallCNN()
    with torch.no_grad():  # non-trivial batch-norm statistics and slopes
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.prelu.weight.uniform_(-0.3, 0.6)
    model.eval()
    example = torch.randn(2, 3, 20, 28)
    names = dict(input_names=["input"], output_names=["output"])
    legacy = os.path.join(OUT, "small_cnn_legacy.onnx")
    torch.onnx.export(model, (example,), legacy, opset_version=11, dynamo=False,
                      dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch"}}, **names)
    dynamo = os.path.join(OUT, "small_cnn_dynamo.onnx")
    dim = torch.export.Dim
    torch.onnx.export(model, (example,), dynamo, dynamo=True, external_data=False,
                      dynamic_shapes=({0: dim("batch"), 2: dim("height", min=8, max=512), 3: dim("width", min=8, max=512)},), **names)
    for height, width in [(20, 28), (33, 17)]:
        x = torch.randn(3, 3, height, width)
        with torch.no_grad():
            expected = model(x).numpy()
        np.save(os.path.join(OUT, f"small_cnn_input_{height}x{width}.npy"), x.numpy())
        np.save(os.path.join(OUT, f"small_cnn_expected_{height}x{width}.npy"), expected)
        for path in [legacy, dynamo]:
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            difference = np.abs(session.run(None, {"input": x.numpy()})[0] - expected).max()
            assert difference < 1e-4, (path, height, width, difference)
            print(f"{os.path.basename(path)} {height}x{width}: onnxruntime within {difference:.2e} of PyTorch")
    for path in [legacy, dynamo]:
        m = onnx.load(path)
        print(os.path.basename(path), "opset", m.opset_import[0].version, sorted({n.op_type for n in m.graph.node}))


def main():
    os.makedirs(OUT, exist_ok=True)
    operator_cases()
    path = os.path.join(OUT, "operators.json")
    with open(path, "w") as f:
        json.dump({"generator": "scripts/generate_onnx_import_fixtures.py", "onnxruntime": onnxruntime.__version__, "cases": cases},
                  f, separators=(",", ":"))
    print(f"wrote {len(cases)} operator cases to {os.path.normpath(path)}")
    if "--operators-only" not in sys.argv:
        torch_cases()


if __name__ == "__main__":
    main()
