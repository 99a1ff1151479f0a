#!/usr/bin/env python3
"""Regenerates Tests/TensorsTests/Fixtures/ops_golden.json (the engine's differentiable ops)
and Tests/NeuralNetTests/Fixtures/losses_golden.json (the losses, which live in NeuralNet):
forward values and gradients computed by PyTorch.

Each case stores its inputs, the op's parameters, the output, an upstream gradient G and
the gradients of sum(output * G) with respect to every input that asks for one.

All cases draw from one seeded stream, in the order below, and are then split by op into
the two files; new cases go at the end so that existing values do not move.

    pip install torch && python3 scripts/generate_golden_ops.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
cases = []


def values(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def add(name, op, inputs, fn, params=None, grads=None):
    """inputs: list of tensors; grads: which inputs get gradients (default all)."""
    grads = grads if grads is not None else [True] * len(inputs)
    leaves = [t.clone().detach().requires_grad_(g) for t, g in zip(inputs, grads)]
    out = fn(*leaves)
    upstream = torch.randn(out.shape)
    (out * upstream).sum().backward()
    cases.append({
        "name": name, "op": op, "params": params or {},
        "inputs": [{"shape": list(t.shape), "data": values(t), "grad": g} for t, g in zip(leaves, grads)],
        "output": {"shape": list(out.shape), "data": values(out)},
        "upstream": values(upstream),
        "grads": [values(t.grad) if g else None for t, g in zip(leaves, grads)],
    })


r = torch.randn
pos = lambda *s: torch.rand(*s) + 0.5

# Broadcasting binary ops, with size-1 dimensions on either side.
add("add broadcast row", "add", [r(2, 3, 4), r(3, 1)], lambda a, b: a + b)
add("subtract broadcast vector", "subtract", [r(2, 3, 4), r(4)], lambda a, b: a - b)
add("multiply size-1 both sides", "multiply", [r(2, 1, 3), r(1, 4, 1)], lambda a, b: a * b)
add("divide broadcast", "divide", [r(3, 4), pos(3, 1)], lambda a, b: a / b)
add("pow tensor", "pow", [pos(3, 4), r(3, 4)], lambda a, b: a ** b)
add("pow scalar", "powScalar", [pos(3, 4)], lambda a: a ** 2.5, {"exponent": 2.5})
add("maximum broadcast", "maximum", [r(3, 4), r(4)], lambda a, b: torch.maximum(a, b))
add("minimum", "minimum", [r(3, 4), r(3, 4)], lambda a, b: torch.minimum(a, b))
add("scalar ops", "scalarMix", [r(3, 4)], lambda a: (3 - a) * 2 + a / 4 - 1)
add("scalar divide", "scalarDivide", [pos(3, 4)], lambda a: 2 / a)

# Unary ops.
add("negate", "negate", [r(3, 4)], lambda a: -a)
add("exp", "exp", [r(3, 4)], torch.exp)
add("log", "log", [pos(3, 4)], torch.log)
add("sqrt", "sqrt", [pos(3, 4)], torch.sqrt)
add("abs", "abs", [r(3, 4)], torch.abs)
add("relu", "relu", [r(3, 4)], torch.relu)
add("leaky relu", "leakyRelu", [r(3, 4)], lambda a: F.leaky_relu(a, 0.1), {"slope": 0.1})
add("gelu", "gelu", [r(3, 4) * 2], F.gelu)
add("sigmoid", "sigmoid", [r(3, 4) * 4], torch.sigmoid)
add("tanh", "tanh", [r(3, 4)], torch.tanh)
add("softplus", "softplus", [r(3, 4) * 10], F.softplus)
add("clamp", "clamp", [r(3, 4)], lambda a: torch.clamp(a, -0.5, 0.7), {"min": -0.5, "max": 0.7})

# Reductions.
add("sum axes 0,2 keepdims", "sum", [r(2, 3, 4)], lambda a: a.sum(dim=(0, 2), keepdim=True), {"axes": [0, 2], "keepDims": True})
add("sum all", "sum", [r(2, 3, 4)], lambda a: a.sum(), {"axes": None, "keepDims": False})
add("mean axis 1", "mean", [r(2, 3, 4)], lambda a: a.mean(dim=1), {"axes": [1], "keepDims": False})
add("variance axis 1 unbiased", "variance", [r(2, 5, 3)], lambda a: a.var(dim=1), {"axes": [1], "correction": 1})
add("variance axes 0,2 biased", "variance", [r(2, 5, 3)], lambda a: a.var(dim=(0, 2), correction=0), {"axes": [0, 2], "correction": 0})
add("max along axis", "maxAxis", [r(3, 5, 2)], lambda a: a.max(dim=1).values, {"axis": 1})
add("min along axis", "minAxis", [r(3, 5)], lambda a: a.min(dim=-1).values, {"axis": -1})
add("amax axes 0,2", "amax", [r(3, 4, 2)], lambda a: torch.amax(a, dim=(0, 2)), {"axes": [0, 2]})
add("logsumexp axis 1", "logSumExp", [r(3, 6) * 3], lambda a: torch.logsumexp(a, dim=1), {"axes": [1]})
add("logsumexp large", "logSumExp", [r(2, 5) * 1e4], lambda a: torch.logsumexp(a, dim=1), {"axes": [1]})
add("norm axis 1", "norm", [r(3, 4)], lambda a: a.norm(dim=1), {"axes": [1]})

# Matrix products.
add("matmul 2d", "matmul", [r(3, 4), r(4, 5)], torch.matmul)
add("matmul batch broadcast", "matmul", [r(2, 3, 4), r(4, 5)], torch.matmul)
add("matmul batch size-1", "matmul", [r(2, 1, 3, 4), r(3, 4, 2)], torch.matmul)
add("linear", "linear", [r(5, 4), r(3, 4), r(3)], F.linear)
add("linear no bias 3d", "linear", [r(2, 5, 4), r(3, 4)], F.linear)

# Softmax family, stable for large logits.
add("softmax last", "softmax", [r(3, 5)], lambda a: F.softmax(a, dim=-1), {"axis": -1})
add("softmax axis 1 of 3d", "softmax", [r(2, 4, 3)], lambda a: F.softmax(a, dim=1), {"axis": 1})
add("log softmax", "logSoftmax", [r(3, 5) * 3], lambda a: F.log_softmax(a, dim=1), {"axis": 1})
# Rows offset by +1e4 and −1e4 (and one not), with spreads of a few units: exp overflows or
# underflows without the max subtraction, and the outputs and gradients stay far from 0 and 1.
add("softmax near 1e4", "softmax", [r(3, 5) * 2 + torch.tensor([[1e4], [-1e4], [0.0]])], lambda a: F.softmax(a, dim=1), {"axis": 1})
add("log softmax near 1e4", "logSoftmax", [r(3, 5) * 1e4], lambda a: F.log_softmax(a, dim=1), {"axis": 1})

# Convolutions: padding, stride, dilation, groups (depthwise), bias, 1x1.
def conv(name, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    inputs = [x, w] + ([b] if b is not None else [])
    add(name, "conv2d", inputs, lambda *t: F.conv2d(t[0], t[1], t[2] if len(t) > 2 else None, stride, padding, dilation, groups), params)

conv("conv 3x3 pad 1 bias", r(2, 3, 6, 5), r(4, 3, 3, 3), r(4), padding=1)
conv("conv stride 2 pad 1", r(2, 2, 7, 7), r(3, 2, 3, 3), stride=2, padding=1)
conv("conv dilation 2", r(1, 2, 7, 6), r(2, 2, 3, 3), r(2), dilation=2, padding=2)
conv("conv groups 2", r(2, 4, 5, 5), r(6, 2, 3, 3), r(6), padding=1, groups=2)
conv("conv depthwise", r(2, 3, 5, 5), r(3, 1, 3, 3), r(3), padding=1, groups=3)
conv("conv 1x1", r(2, 4, 3, 3), r(5, 4, 1, 1), r(5))
conv("conv rectangular stride", r(1, 2, 6, 7), r(2, 2, 2, 3), stride=(2, 1), padding=(1, 0))

# Pooling.
add("max pool 2", "maxPool2d", [r(2, 3, 6, 6)], lambda a: F.max_pool2d(a, 2), {"kernel": 2, "stride": 2, "padding": 0})
add("max pool 3 stride 2 pad 1", "maxPool2d", [r(1, 2, 7, 7)], lambda a: F.max_pool2d(a, 3, 2, 1), {"kernel": 3, "stride": 2, "padding": 1})
add("avg pool 2", "avgPool2d", [r(2, 2, 6, 6)], lambda a: F.avg_pool2d(a, 2), {"kernel": 2, "stride": 2, "padding": 0, "countIncludePadding": True})
add("avg pool 3 s2 p1 include pad", "avgPool2d", [r(1, 2, 7, 7)], lambda a: F.avg_pool2d(a, 3, 2, 1), {"kernel": 3, "stride": 2, "padding": 1, "countIncludePadding": True})
add("avg pool 3 s2 p1 exclude pad", "avgPool2d", [r(1, 2, 7, 7)], lambda a: F.avg_pool2d(a, 3, 2, 1, count_include_pad=False), {"kernel": 3, "stride": 2, "padding": 1, "countIncludePadding": False})
add("adaptive avg 5->3", "adaptiveAvgPool2d", [r(2, 2, 5, 5)], lambda a: F.adaptive_avg_pool2d(a, 3), {"size": 3})
add("adaptive avg global", "adaptiveAvgPool2d", [r(2, 3, 4, 4)], lambda a: F.adaptive_avg_pool2d(a, 1), {"size": 1})

# Normalisation.
def bn(name, shape, training):
    c = shape[1]
    rm, rv = torch.randn(c) * 0.1, torch.rand(c) + 0.5
    def fn(x, w, b):
        return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=training, momentum=0.1, eps=1e-5)
    add(name, "batchNorm", [r(*shape) * 2 + 1, r(c), r(c)], fn,
        {"training": training, "runningMean": values(rm), "runningVariance": values(rv)})

bn("batch norm 2d training", (4, 3, 3, 3), True)
bn("batch norm 1d training", (6, 4), True)
bn("batch norm eval", (2, 3, 2, 2), False)
add("layer norm", "layerNorm", [r(3, 2, 4), r(2, 4), r(2, 4)], lambda x, w, b: F.layer_norm(x, (2, 4), w, b), {"normalizedShape": [2, 4]})

# Shape ops.
add("reshape", "reshape", [r(2, 6)], lambda a: a.reshape(3, 4), {"shape": [3, 4]})
add("permute", "permute", [r(2, 3, 4)], lambda a: a.permute(2, 0, 1), {"axes": [2, 0, 1]})
add("transpose", "transpose", [r(3, 4)], lambda a: a.t())
add("slice", "slice", [r(3, 6, 2)], lambda a: a[:, 1:4, :], {"axis": 1, "start": 1, "end": 4})
add("concat", "concat", [r(2, 3), r(2, 2)], lambda a, b: torch.cat([a, b], dim=1), {"axis": 1})
add("stack", "stack", [r(2, 3), r(2, 3)], lambda a, b: torch.stack([a, b], dim=1), {"axis": 1})
add("index select repeats", "indexSelect", [r(4, 3)], lambda a: a.index_select(0, torch.tensor([2, 0, 2])), {"axis": 0, "indices": [2, 0, 2]})
gather_index = torch.tensor([[0, 2], [1, 1], [2, 0]])
add("gather", "gather", [r(3, 4)], lambda a: a.gather(1, gather_index), {"axis": 1, "indices": values(gather_index), "indexShape": [3, 2]})

# Losses.
labels = [1, 0, 3, 2]
add("cross entropy", "crossEntropy", [r(4, 5)], lambda a: F.cross_entropy(a, torch.tensor(labels)), {"labels": labels, "smoothing": 0.0})
add("cross entropy smoothing", "crossEntropy", [r(4, 5)], lambda a: F.cross_entropy(a, torch.tensor(labels), label_smoothing=0.1), {"labels": labels, "smoothing": 0.1})
soft = F.softmax(r(4, 5), dim=1)
add("cross entropy soft targets", "crossEntropySoft", [r(4, 5), soft], lambda a, t: F.cross_entropy(a, t), grads=[True, False])
tgt = F.softmax(r(3, 5) * 8, dim=1)
tgt[0, 1] = 0.0
tgt[1, 3] = 1e-30
add("kl divergence near zero", "klDivergence", [F.log_softmax(r(3, 5), dim=1), tgt],
    lambda i, t: F.kl_div(i, t, reduction="batchmean"), grads=[True, False])
add("kl divergence both grads", "klDivergence", [F.log_softmax(r(3, 4), dim=1), F.softmax(r(3, 4), dim=1)],
    lambda i, t: F.kl_div(i, t, reduction="batchmean"))
add("mse", "mse", [r(3, 4), r(3, 4)], F.mse_loss)
add("smooth l1", "smoothL1", [r(3, 4) * 2, r(3, 4)], F.smooth_l1_loss)
add("cosine similarity", "cosineSimilarity", [r(3, 5), r(3, 5)], lambda a, b: F.cosine_similarity(a, b, dim=1), {"axis": 1})
add("pairwise distances", "pairwiseDistances", [r(4, 3), r(5, 3)], torch.cdist)
add("l2 normalize", "l2Normalize", [r(3, 4)], lambda a: F.normalize(a, dim=1), {"axis": 1})
add("erf", "erf", [r(3, 4) * 2], torch.erf)

# Added for issue 13 (appended, so the cases above keep their values).
add("amin axes 0,2", "amin", [r(3, 4, 2)], lambda a: torch.amin(a, dim=(0, 2)), {"axes": [0, 2]})
add("amin axis 1 keepdims", "amin", [r(2, 5, 3)], lambda a: torch.amin(a, dim=1, keepdim=True), {"axes": [1], "keepDims": True})
tied = r(3, 4)
tied[0, 1] = tied[2, 3] = tied.min() - 0.5
add("amin all with a tie", "amin", [tied], torch.amin, {"axes": None})
add("max pool 3 dilation 2 pad 1", "maxPool2d", [r(2, 2, 9, 9)], lambda a: F.max_pool2d(a, 3, 1, 1, dilation=2),
    {"kernel": 3, "stride": 1, "padding": 1, "dilation": 2})
add("max pool 2x3 dilation 2x1 stride 1x2", "maxPool2d", [r(1, 3, 7, 8)],
    lambda a: F.max_pool2d(a, (2, 3), (1, 2), (1, 1), dilation=(2, 1)),
    {"kernel": [2, 3], "stride": [1, 2], "padding": [1, 1], "dilation": [2, 1]})


def bn_plain(name, shape, training):
    c = shape[1]
    rm, rv = torch.randn(c) * 0.1, torch.rand(c) + 0.5
    add(name, "batchNorm", [r(*shape) * 2 + 1],
        lambda x: F.batch_norm(x, rm.clone(), rv.clone(), None, None, training=training, momentum=0.1, eps=1e-5),
        {"training": training, "runningMean": values(rm), "runningVariance": values(rv)})


bn_plain("batch norm 2d training no affine", (4, 3, 3, 3), True)
bn_plain("batch norm eval no affine", (2, 3, 2, 2), False)
add("layer norm no affine", "layerNorm", [r(3, 2, 4)], lambda x: F.layer_norm(x, (2, 4)), {"normalizedShape": [2, 4]})
add("kl divergence log target", "klDivergence", [F.log_softmax(r(3, 5), dim=1), F.log_softmax(r(3, 5) * 2, dim=1)],
    lambda i, t: F.kl_div(i, t, reduction="batchmean", log_target=True), {"targetIsLog": True})
add("smooth l1 beta 0.5", "smoothL1", [r(3, 4) * 2, r(3, 4)], lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), {"beta": 0.5})
add("smooth l1 beta 3", "smoothL1", [r(3, 4) * 2, r(3, 4)], lambda a, b: F.smooth_l1_loss(a, b, beta=3.0), {"beta": 3.0})
# where(condition, a, b), the three broadcast; the 0/1 condition gets no gradient.
add("select broadcast", "select", [r(3, 1), r(4), (r(2, 3, 4) > 0).float()],
    lambda a, b, c: torch.where(c != 0, a, b), grads=[True, True, False])
add("select same shapes", "select", [r(2, 3), r(2, 3), torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])],
    lambda a, b, c: torch.where(c != 0, a, b), grads=[True, True, False])

# Added for issue 14 (class weights; appended, so the cases above keep their values).
weighted_labels = [1, 0, 3, 2, 1, 1]
class_weights = [0.5, 2.0, 1.0, 3.0, 0.25]
add("cross entropy class weights", "crossEntropy", [r(6, 5)],
    lambda a: F.cross_entropy(a, torch.tensor(weighted_labels), weight=torch.tensor(class_weights)),
    {"labels": weighted_labels, "smoothing": 0.0, "weights": class_weights})
add("cross entropy class weights smoothing", "crossEntropy", [r(6, 5)],
    lambda a: F.cross_entropy(a, torch.tensor(weighted_labels), weight=torch.tensor(class_weights), label_smoothing=0.2),
    {"labels": weighted_labels, "smoothing": 0.2, "weights": class_weights})

# Added for issue 17 (the depthwise kernels; appended, so the cases above keep their values):
# MobileNetV2's 3×3 depthwise convolutions at strides 1 and 2, a channel multiplier, 5×5.
conv("conv depthwise 3x3 s1 p1 8x8", r(2, 4, 8, 8), r(4, 1, 3, 3), padding=1, groups=4)
conv("conv depthwise 3x3 s2 p1 odd", r(2, 3, 9, 7), r(3, 1, 3, 3), r(3), stride=2, padding=1, groups=3)
conv("conv depthwise multiplier 2 s2", r(1, 2, 8, 8), r(4, 1, 3, 3), r(4), stride=2, padding=1, groups=2)
conv("conv depthwise 5x5 s2 p2", r(1, 2, 9, 10), r(2, 1, 5, 5), stride=2, padding=2, groups=2)

# Added for issue 15 (text encoders; appended, so the cases above keep their values): the
# embedding lookup (repeated ids accumulate their gradients), attention's masked, scaled
# softmax (padded keys get exactly zero weight) and the product with a transposed operand.
embedding_ids = [[3, 0, 7, 3], [5, 5, 1, 9]]
add("embedding repeated ids", "embedding", [r(10, 4)],
    lambda w: F.embedding(torch.tensor(embedding_ids), w),
    {"indices": sum(embedding_ids, []), "indexShape": [2, 4]})
softmax_mask = [[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
add("masked softmax scaled", "maskedSoftmax", [r(2, 3, 4, 5) * 3],
    lambda x: torch.softmax((x * 0.5).masked_fill(torch.tensor(softmax_mask)[:, None, None, :] == 0, float("-inf")), dim=-1),
    {"mask": sum(softmax_mask, []), "scale": 0.5})
add("masked softmax no mask", "maskedSoftmax", [r(2, 6, 7)], lambda x: torch.softmax(x, dim=-1), {"scale": 1.0})
add("matmul transposing other", "matmulTransposed", [r(2, 3, 4, 5), r(2, 3, 6, 5)], lambda a, b: a @ b.transpose(-1, -2))
add("matmul transposing other broadcast", "matmulTransposed", [r(2, 3, 4, 5), r(6, 5)], lambda a, b: a @ b.t())


def multi_head_attention(q, k, v, heads, scale, mask=None):
    """softmax(scale · Q_h·K_hᵀ) · V_h per head, padded keys masked out, heads side by side."""
    b, n, d = q.shape
    split = lambda t: t.reshape(b, n, heads, d // heads).transpose(1, 2)
    scores = scale * split(q) @ split(k).transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(torch.tensor(mask)[:, None, None, :] == 0, float("-inf"))
    return (torch.softmax(scores, dim=-1) @ split(v)).transpose(1, 2).reshape(b, n, d)


attention_mask = [[1.0, 1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
add("multi-head attention masked", "multiHeadAttention", [r(2, 5, 8), r(2, 5, 8), r(2, 5, 8)],
    lambda q, k, v: multi_head_attention(q, k, v, 2, 0.5, attention_mask),
    {"heads": 2, "scale": 0.5, "mask": sum(attention_mask, [])})
add("multi-head attention no mask", "multiHeadAttention", [r(1, 4, 6), r(1, 4, 6), r(1, 4, 6)],
    lambda q, k, v: multi_head_attention(q, k, v, 3, 2 ** -0.5), {"heads": 3, "scale": 2 ** -0.5})

# The losses are NeuralNet's; everything else is the engine's.
loss_ops = {"crossEntropy", "crossEntropySoft", "klDivergence", "mse", "smoothL1", "cosineSimilarity",
            "pairwiseDistances", "l2Normalize"}
root = os.path.join(os.path.dirname(__file__), "..", "Tests")
for folder, name, selected in [("TensorsTests", "ops_golden.json", [c for c in cases if c["op"] not in loss_ops]),
                               ("NeuralNetTests", "losses_golden.json", [c for c in cases if c["op"] in loss_ops])]:
    path = os.path.join(root, folder, "Fixtures", name)
    with open(path + ".tmp", "w") as f:
        json.dump({"generator": "scripts/generate_golden_ops.py", "torch": torch.__version__, "cases": selected}, f, separators=(",", ":"))
    os.replace(path + ".tmp", path)
    print(f"wrote {len(selected)} cases to {os.path.normpath(path)}")
