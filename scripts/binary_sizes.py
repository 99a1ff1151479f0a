#!/usr/bin/env python3
"""Sizes of built executables (docs/quantization.md, "Binary size"): unstripped, stripped (a
stripped copy in a temporary folder), .text, and their symbols grouped by module: the module
named in each Swift symbol's mangling ($s<length><Module>...), C kernels (distill_*) apart.

    swift build -c release --product distill-predict-example && swift build -c release --product distill
    python3 scripts/binary_sizes.py .build/release/distill-predict-example .build/release/distill
"""
import collections
import os
import re
import subprocess
import sys
import tempfile


def modules(path):
    """Bytes of symbols per module."""
    listing = subprocess.run(["nm", "-S", "--size-sort", path], capture_output=True, text=True, check=True).stdout
    sizes = collections.Counter()
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) != 4:
            continue
        size, name = int(fields[1], 16), fields[3]
        mangled = re.match(r"^\$s(\d+)", name)
        if mangled:
            start = 2 + len(mangled.group(1))
            module = name[start:start + int(mangled.group(1))]
            if module.startswith("So"):
                module = "(C types imported into Swift)"
        elif name.startswith("$s"):
            module = "(Swift standard library generics)"
        elif name.startswith("distill_"):
            module = "CKernels (C)"
        else:
            module = "(other C)"
        sizes[module] += size
    return sizes


for path in sys.argv[1:]:
    with tempfile.TemporaryDirectory() as folder:
        stripped = os.path.join(folder, "stripped")
        subprocess.run(["strip", "-o", stripped, path], check=True)
        stripped_size = os.path.getsize(stripped)
    sections = subprocess.run(["size", "-A", path], capture_output=True, text=True, check=True).stdout
    text = next(int(line.split()[1]) for line in sections.splitlines() if line.startswith(".text "))
    print(f"{path}: {os.path.getsize(path):,} bytes, stripped {stripped_size:,}, .text {text:,}")
    sizes = modules(path)
    total = sum(sizes.values())
    for module, size in sizes.most_common(16):
        print(f"  {module:36s} {size:>10,} {100 * size / total:5.1f}%")
    print(f"  {'all symbols':36s} {total:>10,}")
