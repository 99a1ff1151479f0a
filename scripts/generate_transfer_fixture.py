#!/usr/bin/env python3
"""Regenerates Tests/ModelFormatsTests/Fixtures/onnx/branchnet*: a small CNN that is not a zoo
architecture, trained in PyTorch on Fashion-MNIST classes 0-4 and exported with
torch.onnx.export, for `distill transfer --from branchnet.onnx` and its tests.

The network has what user models have and the zoo's do not: a residual Add, a concat of two
branches, a BatchNormalization that no exporter can fold (it follows the Add), global
average pooling, a Gemm head, and a Softmax after the head (a deployed classifier that
outputs probabilities).

- branchnet.onnx: the torch.export-based exporter (opset 18).
- branchnet_expected.npy: PyTorch's outputs (probabilities) for input.npy's 16 images.

Needs torch, onnx, onnxscript and numpy; run from the repository root (input.npy comes from
generate_onnx_fixtures.py):
    python3 scripts/generate_transfer_fixture.py
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from generate_onnx_fixtures import OUT, idx, images  # noqa: E402

OLD_CLASSES = [0, 1, 2, 3, 4]


class BranchNet(nn.Module):
    def __init__(self, classes=len(OLD_CLASSES)):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.left = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.right = nn.Conv2d(8, 8, 1)
        self.mix = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)          # [N, 8, 14, 14]
        x = self.bn(x + F.relu(self.left(x)))              # residual, then batch norm
        y = torch.cat([x, F.relu(self.right(x))], dim=1)   # two branches: [N, 16, 14, 14]
        y = F.relu(self.mix(y))                            # [N, 16, 7, 7]
        y = F.adaptive_avg_pool2d(y, 1).flatten(1)         # [N, 16]
        return F.softmax(self.head(y), dim=-1)


def subset(x, y):
    keep = np.isin(y.numpy(), OLD_CLASSES)
    return x[keep], y[keep]


def main():
    torch.manual_seed(0)
    train_x, train_y = subset(images("train-images-idx3-ubyte.gz"), torch.from_numpy(idx("train-labels-idx1-ubyte.gz").astype(np.int64)))
    test_x, test_y = subset(images("t10k-images-idx3-ubyte.gz"), torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)))
    model = BranchNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for epoch in range(2):
        model.train()
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 128):
            batch = order[start:start + 128]
            loss = F.nll_loss(torch.log(model(train_x[batch]) + 1e-12), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
        print(f"branchnet epoch {epoch + 1}: test accuracy on classes 0-4 {accuracy:.4f}")

    sample = torch.from_numpy(np.load(os.path.join(OUT, "input.npy")))
    with torch.no_grad():
        np.save(os.path.join(OUT, "branchnet_expected.npy"), model(sample).numpy())
    path = os.path.join(OUT, "branchnet.onnx")
    torch.onnx.export(model, (sample,), path, opset_version=18, input_names=["input"], output_names=["probabilities"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False)

    import onnx
    exported = onnx.load(path)
    print("branchnet.onnx opset", exported.opset_import[0].version, os.path.getsize(path), "bytes")
    for node in exported.graph.node:
        print(f"  {node.name}: {node.op_type}({', '.join(node.input)}) -> {', '.join(node.output)}")


if __name__ == "__main__":
    main()
