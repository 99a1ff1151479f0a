#!/usr/bin/env python3
"""Regenerates Tests/DatasetsTests/Fixtures: small files written by NumPy and Pillow that
the Datasets readers must read (and a few they must reject with a clear message).

    pip install numpy pillow && python3 scripts/generate_data_fixtures.py
"""
import io
import json
import os
import struct

import numpy as np
from PIL import Image

out = os.path.join(os.path.dirname(__file__), "..", "Tests", "DatasetsTests", "Fixtures")
os.makedirs(out, exist_ok=True)
values = np.array([[1.5, -2.0, 3.25], [0.0, 7.0, -0.5]])
expected = {}

for name, dtype in [("f4", "<f4"), ("f8", "<f8"), ("f2", "<f2"), ("u1", "|u1"), ("i4", "<i4"), ("i8", "<i8"), ("be_f4", ">f4")]:
    array = values.astype(dtype) if dtype[1] in "f" else np.abs(values).astype(dtype)
    np.save(os.path.join(out, f"{name}.npy"), array)
    expected[name] = {"shape": list(array.shape), "values": [float(v) for v in array.reshape(-1)]}

# Versions 2.0 and 3.0 (NumPy picks them for huge or non-ASCII headers; write them explicitly).
for version in [(2, 0), (3, 0)]:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, values.astype("<f4"), version=version)
    with open(os.path.join(out, f"v{version[0]}.npy"), "wb") as f:
        f.write(buffer.getvalue())
expected["v2"] = expected["v3"] = expected["f4"]

np.save(os.path.join(out, "fortran.npy"), np.asfortranarray(values.astype("<f4")))
np.save(os.path.join(out, "object.npy"), np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
np.save(os.path.join(out, "scalar.npy"), np.float32(4.5))

np.savez(os.path.join(out, "stored.npz"), images=values.astype("<f4"), labels=np.array([3, 1], dtype="<i8"))
np.savez_compressed(os.path.join(out, "compressed.npz"), images=values.astype("<f4"), labels=np.array([3, 1], dtype="<i8"))

# Images: a 6×4 gradient, grayscale and RGB, PNG and JPEG.
gray = np.array([[(x * 40 + y * 10) % 256 for x in range(6)] for y in range(4)], dtype=np.uint8)
rgb = np.stack([gray, 255 - gray, np.full_like(gray, 128)], axis=-1)
Image.fromarray(gray, "L").save(os.path.join(out, "gray.png"))
Image.fromarray(rgb, "RGB").save(os.path.join(out, "rgb.png"))
Image.fromarray(rgb, "RGB").save(os.path.join(out, "rgb.jpg"), quality=95)
expected["gray.png"] = {"width": 6, "height": 4, "pixels": [int(v) for v in gray.reshape(-1)]}
expected["rgb.png"] = {"width": 6, "height": 4, "pixels": [int(v) for v in rgb.reshape(-1)]}
decoded = np.asarray(Image.open(os.path.join(out, "rgb.jpg")).convert("RGB"))
expected["rgb.jpg"] = {"width": 6, "height": 4, "pixels": [int(v) for v in decoded.reshape(-1)]}

with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f)
print("wrote fixtures to", os.path.normpath(out))
