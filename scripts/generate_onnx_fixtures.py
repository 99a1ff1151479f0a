#!/usr/bin/env python3
"""Regenerates Tests/ModelFormatsTests/Fixtures/onnx: ONNX files written by PyTorch's own
exporters, which Distill must read and run.

- teacher.safetensors / teacher.onnx / teacher_legacy.onnx: the zoo's `lenet5` trained in
  PyTorch for two epochs on Fashion-MNIST (Distill's normalisation), saved as a state dict
  and exported with the torch.export-based exporter (opset 18) and the TorchScript one
  (opset 13). The end-to-end test distils a Swift cnn-student from each.
- ops.onnx / ops_legacy.onnx: a small network that uses every operator Distill reads
  (GELU, LeakyReLU, Sigmoid, Tanh, average pooling, batch norm that cannot be folded,
  transpose, squeeze/unsqueeze, mean, arithmetic, concat, softmax, matmul).
- *_input.npy / *_expected.npy: 16 test images and PyTorch's outputs for them.

Needs torch, onnx, onnxscript, safetensors and numpy; run from the repository root:
    python3 scripts/generate_onnx_fixtures.py
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_models  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelFormatsTests", "Fixtures", "onnx")
DATA = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def images(name):
    return torch.from_numpy(((idx(name).astype(np.float32) / 255 - MEAN) / STD)[:, None])


class Ops(nn.Module):
    """Every operator Distill's ONNX reader runs, in one small classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)  # after a ReLU: stays a BatchNormalization node
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(12, 10)
        self.mix = nn.Parameter(torch.randn(7, 7))

    def forward(self, x):
        x = self.bn(F.relu(self.conv(x)))
        x = self.pool(x)                                   # [N, 6, 14, 14]
        x = F.max_pool2d(x, 2)                             # [N, 6, 7, 7]
        a = F.gelu(x[:, :3]) * torch.sigmoid(x[:, 3:])     # [N, 3, 7, 7]
        b = torch.tanh(x[:, 3:]) - F.leaky_relu(x[:, :3], 0.2) / 2.0
        y = torch.cat([a, b], dim=1)                       # [N, 6, 7, 7]
        y = torch.matmul(y, self.mix).transpose(2, 3)      # [N, 6, 7, 7]
        pooled = y.mean(dim=(2, 3))                        # [N, 6]
        peak = y.amax(dim=3).mean(dim=2, keepdim=True).squeeze(2)  # [N, 6]
        features = torch.cat([pooled, peak], dim=1).unsqueeze(1).squeeze(1)
        return F.softmax(self.head(features), dim=-1)


def export(model, example, path, legacy):
    kwargs = dict(input_names=["input"], output_names=["output"])
    if legacy:
        torch.onnx.export(model, (example,), path, opset_version=13, dynamic_axes={"input": {0: "batch"}}, dynamo=False, **kwargs)
    else:
        torch.onnx.export(model, (example,), path, opset_version=18, dynamic_shapes=({0: torch.export.Dim("batch")},),
                          dynamo=True, external_data=False, **kwargs)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    train_x, train_y = images("train-images-idx3-ubyte.gz"), torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64))
    test_x, test_y = images("t10k-images-idx3-ubyte.gz"), torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64))

    teacher = zoo_models.make("lenet5")
    optimizer = torch.optim.SGD(teacher.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for epoch in range(2):
        teacher.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 128):
            batch = order[start:start + 128]
            loss = F.cross_entropy(teacher(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        teacher.eval()
        with torch.no_grad():
            accuracy = (teacher(test_x).argmax(1) == test_y).float().mean().item()
        print(f"lenet5 epoch {epoch + 1}: test accuracy {accuracy:.4f}")
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, os.path.join(OUT, "teacher.safetensors"),
              metadata={"distill.model": "lenet5"})

    sample = test_x[:16].contiguous()
    np.save(os.path.join(OUT, "input.npy"), sample.numpy())
    with torch.no_grad():
        np.save(os.path.join(OUT, "teacher_expected.npy"), teacher(sample).numpy())
    export(teacher, sample, os.path.join(OUT, "teacher.onnx"), legacy=False)
    export(teacher, sample, os.path.join(OUT, "teacher_legacy.onnx"), legacy=True)

    ops = Ops()
    with torch.no_grad():  # non-trivial batch-norm statistics
        ops.bn.running_mean.uniform_(-0.5, 0.5)
        ops.bn.running_var.uniform_(0.5, 2)
        ops.bn.weight.uniform_(0.5, 1.5)
    ops.eval()
    with torch.no_grad():
        np.save(os.path.join(OUT, "ops_expected.npy"), ops(sample).numpy())
    export(ops, sample, os.path.join(OUT, "ops.onnx"), legacy=False)
    export(ops, sample, os.path.join(OUT, "ops_legacy.onnx"), legacy=True)

    import onnx
    for name in ["teacher.onnx", "teacher_legacy.onnx", "ops.onnx", "ops_legacy.onnx"]:
        model = onnx.load(os.path.join(OUT, name))
        print(name, "opset", model.opset_import[0].version, sorted({n.op_type for n in model.graph.node}))


if __name__ == "__main__":
    main()
