#!/usr/bin/env python3
"""Fits the rational approximation of erf that GELU uses (Sources/CKernels/rows.c,
`erf_rational` and its vector forms): erf(x) ≈ x·P(x²)/Q(x²) on [0, 4] (odd, so on [−4, 4]), P of degree 6 and Q
of degree 5 with Q(0) = 1, by linearised least squares (P − erf·Q = 0) reweighted by 1/Q a
few times. Prints the coefficients and the largest error of a Float32 evaluation on [−5, 5]
(clamped to ±4, as the C code does).

    python3 scripts/fit_erf.py
"""
from math import erf

import numpy as np

P_DEGREE, Q_DEGREE = 6, 5
x = np.linspace(1e-4, 4, 20000)
f = np.array([erf(v) for v in x])
t = x * x
weights = np.ones_like(x)
for _ in range(30):
    a = np.hstack([np.stack([x * t ** k for k in range(P_DEGREE + 1)], 1),
                   np.stack([-f * t ** k for k in range(1, Q_DEGREE + 1)], 1)]) / weights[:, None]
    c, *_ = np.linalg.lstsq(a, f / weights, rcond=None)
    p, q = c[:P_DEGREE + 1], np.concatenate([[1.0], c[P_DEGREE + 1:]])
    weights = np.polyval(q[::-1], t)

xs = np.linspace(-5, 5, 200001, dtype=np.float32)
clamped = np.clip(xs, np.float32(-4), np.float32(4))
t32 = clamped * clamped
p32, q32 = np.float32(0), np.float32(0)
for k in range(P_DEGREE, -1, -1):
    p32 = p32 * t32 + np.float32(p[k])
for k in range(Q_DEGREE, -1, -1):
    q32 = q32 * t32 + np.float32(q[k])
approximation = clamped * p32 / q32
print("P (constant first):", ", ".join(f"{np.float32(v):.8g}" for v in p))
print("Q (constant first):", ", ".join(f"{np.float32(v):.8g}" for v in q))
print("largest Float32 error on [-5, 5]:", float(np.abs(approximation - np.array([erf(float(v)) for v in xs])).max()))
