#!/usr/bin/env python3
"""The starting point of docs/your-data.md: a folder of colour images and a PyTorch model.

Makes `photos/` (train/ and test/ folders of 48x48 RGB PNG images of six shapes drawn in
random colours on noisy backgrounds: a stand-in for a user's own photos), trains a small
PyTorch CNN on them with torchvision-style preprocessing (ImageNet mean and std), and exports
it to ONNX with symbolic batch, height and width axes, as a user's own project would:

    python3 scripts/your_data_example.py OUT_FOLDER

Needs torch, numpy and Pillow. Deterministic (seeded); about four minutes on two cores.
"""
import math
import os
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

SHAPES = ["circle", "cross", "diamond", "ellipse", "ring", "square", "stripes", "triangle"]
SIZE = 48
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def draw(shape, rng):
    background = rng.integers(0, 140, (SIZE, SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    d = ImageDraw.Draw(image)
    # A distractor: a stroke of another colour somewhere.
    x0, y0, x1, y1 = (int(v) for v in rng.integers(0, SIZE, 4))
    d.line([(x0, y0), (x1, y1)], fill=tuple(int(c) for c in rng.integers(60, 256, 3)), width=int(rng.integers(1, 4)))
    colour = tuple(int(c) for c in rng.integers(100, 256, 3))
    r = int(rng.integers(6, 14))
    cx, cy = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, 2))
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=colour)
    elif shape == "ring":
        d.ellipse(box, outline=colour, width=4)
    elif shape == "square":
        d.rectangle(box, fill=colour)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "ellipse":
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=colour)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        d.rectangle([cx - r, cy - 3, cx + r, cy + 3], fill=colour)
        d.rectangle([cx - 3, cy - r, cx + 3, cy + r], fill=colour)
    else:
        angle = rng.uniform(0, math.pi)
        for k in range(-3, 4):
            ox, oy = k * 7 * math.cos(angle + math.pi / 2), k * 7 * math.sin(angle + math.pi / 2)
            dx, dy = r * math.cos(angle), r * math.sin(angle)
            d.line([(cx + ox - dx, cy + oy - dy), (cx + ox + dx, cy + oy + dy)], fill=colour, width=3)
    return image


def make_folder(root, rng, per_class):
    for split, count in per_class.items():
        for shape in SHAPES:
            folder = os.path.join(root, split, shape)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                draw(shape, rng).save(os.path.join(folder, f"{i:04d}.png"))


def load(root, split):
    xs, ys = [], []
    for label, shape in enumerate(SHAPES):
        folder = os.path.join(root, split, shape)
        for name in sorted(os.listdir(folder)):
            pixels = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"), dtype=np.float32) / 255
            xs.append((pixels - MEAN) / STD)
            ys.append(label)
    return torch.tensor(np.stack(xs).transpose(0, 3, 1, 2), dtype=torch.float32), torch.tensor(ys)


class ShapeNet(nn.Module):
    """The user's own architecture: conv-BN-Hardswish blocks, global pooling, a linear head."""

    def __init__(self, classes):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.Hardswish(), nn.MaxPool2d(2))

        self.features = nn.Sequential(block(3, 64), block(64, 128), block(128, 256), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(256, classes)

    def forward(self, x):
        return self.head(self.features(x))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "example"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    photos = os.path.join(out, "photos")
    make_folder(photos, np.random.default_rng(0), {"train": 250, "test": 50})
    x, y = load(photos, "train")
    model = ShapeNet(len(SHAPES))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(12):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    tx, ty = load(photos, "test")
    with torch.no_grad():
        accuracy = (model(tx).argmax(1) == ty).float().mean().item()
    print(f"teacher test accuracy {accuracy * 100:.2f}% on {len(ty)} images")
    path = os.path.join(out, "shapenet.onnx")
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    print(f"wrote {path} and {photos}/train, {photos}/test")


if __name__ == "__main__":
    main()
