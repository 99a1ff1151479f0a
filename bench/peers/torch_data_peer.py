#!/usr/bin/env python3
"""The PyTorch side of the image-folder benchmark, and the folders it runs on.

    python3 bench/peers/torch_data_peer.py generate --kind png32 --count 20000 --out /tmp/f
    python3 bench/peers/torch_data_peer.py epoch --folder /tmp/f [--iterations 1] [--workers 2]

`generate` writes --count images in 10 class folders with Pillow: 32×32 RGB PNGs (`png32`)
or 224×224 RGB JPEGs at quality 90 (`jpeg224`), smooth random content plus noise so that
they compress like photographs rather than like noise.

`epoch` is the same work as DistillBench's stream-epoch, the way a PyTorch user without
torchvision writes it: a Dataset that lists the folder, opens each image with PIL, converts
it to float with NumPy, normalises it with mean 0.5 and standard deviation 0.25 per channel
and returns a [3, H, W] tensor; torch.utils.data.DataLoader with batch 256, shuffle and
--workers worker processes. The scan and the whole first epoch (worker start-up included)
are timed: what a user waits for. Prints one JSON line.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32)
EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolderDataset(torch.utils.data.Dataset):
    """One subfolder per class, sorted, as torchvision's ImageFolder."""

    def __init__(self, root):
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.items = [(os.path.join(root, c, f), label) for label, c in enumerate(classes)
                      for f in sorted(os.listdir(os.path.join(root, c))) if f.lower().endswith(EXTENSIONS)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, label = self.items[index]
        with Image.open(path) as image:
            x = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        x = (x - MEAN) / STD
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), label


def epoch(folder, iterations, workers):
    seconds, images = [], 0
    for i in range(iterations):
        start = time.perf_counter()
        data = ImageFolderDataset(folder)
        loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True, num_workers=workers,
                                             generator=torch.Generator().manual_seed(i))
        images = 0
        for x, _ in loader:
            images += x.shape[0]
        seconds.append(time.perf_counter() - start)
    return {"case": "stream-epoch", "images": images, "seconds": seconds}


def generate(kind, count, out):
    rng = np.random.default_rng(0)
    size, extension = (32, ".png") if kind == "png32" else (224, ".jpg")
    for c in range(10):
        os.makedirs(os.path.join(out, f"class{c}"), exist_ok=True)
    for i in range(count):
        coarse = rng.integers(0, 256, size=(size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int16)
        pixels = np.clip(smooth + rng.integers(-6, 7, size=smooth.shape), 0, 255).astype(np.uint8)
        path = os.path.join(out, f"class{i % 10}", f"{i:06d}{extension}")
        if extension == ".png":
            Image.fromarray(pixels).save(path)
        else:
            Image.fromarray(pixels).save(path, quality=90)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--kind", choices=["png32", "jpeg224"], required=True)
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--out", required=True)
    e = sub.add_parser("epoch")
    e.add_argument("--folder", required=True)
    e.add_argument("--iterations", type=int, default=1)
    e.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.command == "generate":
        generate(args.kind, args.count, args.out)
    else:
        print(json.dumps(epoch(args.folder, args.iterations, args.workers)))
