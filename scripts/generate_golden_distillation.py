#!/usr/bin/env python3
"""Regenerates Tests/DistillationTests/Fixtures/losses_golden.json: every distillation loss
computed by a PyTorch implementation of the same formula (following mdistiller and
torchdistill where those define it), with gradients with respect to the student's inputs.

    pip install torch && python3 scripts/generate_golden_distillation.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.manual_seed(0)
B, C = 6, 5


def values(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def entry(t):
    return {"shape": list(t.shape), "data": values(t)}


cases = []


def case(name, inputs, teacher, fn, params=None, extra=None):
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    loss = fn(leaves, teacher)
    loss.backward()
    cases.append({"name": name, "params": params or {}, "inputs": {k: entry(v) for k, v in leaves.items()},
                  "teacher": {k: entry(v) for k, v in teacher.items()}, "loss": float(loss.detach()),
                  "grads": {k: values(v.grad) for k, v in leaves.items()}, "extra": extra or {}})


s_logits, t_logits = torch.randn(B, C) * 2, torch.randn(B, C) * 3
labels = [0, 3, 1, 4, 2, 2]


def kd(s, t, T=4.0):
    return F.kl_div(F.log_softmax(s["logits"] / T, 1), F.softmax(t["logits"] / T, 1), reduction="batchmean") * T * T


case("kd", {"logits": s_logits}, {"logits": t_logits}, kd, {"temperature": 4.0})


def dkd(s, t, alpha=1.0, beta=8.0, T=4.0):
    target = torch.tensor(labels)
    gt = torch.zeros_like(s["logits"]).scatter_(1, target.unsqueeze(1), 1).bool()
    other = ~gt
    ps, pt = F.softmax(s["logits"] / T, 1), F.softmax(t["logits"] / T, 1)
    cat = lambda p: torch.cat([(p * gt).sum(1, keepdims=True), (p * other).sum(1, keepdims=True)], 1)
    tckd = F.kl_div(torch.log(cat(ps)), cat(pt), reduction="sum") * T ** 2 / B
    pt2 = F.softmax(t["logits"] / T - 1000.0 * gt, 1)
    ls2 = F.log_softmax(s["logits"] / T - 1000.0 * gt, 1)
    nckd = F.kl_div(ls2, pt2, reduction="sum") * T ** 2 / B
    return alpha * tckd + beta * nckd


case("dkd", {"logits": s_logits}, {"logits": t_logits}, dkd, {"labels": labels})

fs, ft = torch.randn(B, 3, 4, 4), torch.randn(B, 6, 8, 8)
reg_w, reg_b = torch.randn(6, 3, 1, 1) * 0.3, torch.randn(6) * 0.1


def fitnets(s, t):
    return F.mse_loss(F.conv2d(s["feature"], reg_w, reg_b), F.adaptive_avg_pool2d(t["feature"], 4))


case("fitnets", {"feature": fs}, {"feature": ft}, fitnets, extra={"conv.weight": entry(reg_w), "conv.bias": entry(reg_b)})

at_t = torch.randn(B, 7, 4, 4)


def at(s, t):
    q = lambda f: F.normalize(f.pow(2).mean(1).view(f.size(0), -1))
    return (q(s["feature"]) - q(t["feature"])).pow(2).mean()


case("at", {"feature": fs}, {"feature": at_t}, at)

es, et = torch.randn(B, 4), torch.randn(B, 9)


def pdist(e):
    e2 = e.pow(2).sum(1)
    d = (e2.unsqueeze(1) + e2.unsqueeze(0) - 2 * e @ e.t()).clamp(min=1e-12).sqrt().clone()
    d[range(len(e)), range(len(e))] = 0
    return d


def rkd(s, t):
    with torch.no_grad():
        td = pdist(t["embedding"]); td = td / td[td > 0].mean()
    d = pdist(s["embedding"]); d = d / d[d > 0].mean()
    loss_d = F.smooth_l1_loss(d, td)
    with torch.no_grad():
        n = F.normalize(t["embedding"].unsqueeze(0) - t["embedding"].unsqueeze(1), p=2, dim=2)
        ta = torch.bmm(n, n.transpose(1, 2)).view(-1)
    n = F.normalize(s["embedding"].unsqueeze(0) - s["embedding"].unsqueeze(1), p=2, dim=2)
    sa = torch.bmm(n, n.transpose(1, 2)).view(-1)
    return 25 * loss_d + 50 * F.smooth_l1_loss(sa, ta)


case("rkd", {"embedding": es}, {"embedding": et}, rkd)


def sp(s, t):
    gs = F.normalize(s["feature"].view(B, -1) @ s["feature"].view(B, -1).t())
    gt = F.normalize(t["feature"].view(B, -1) @ t["feature"].view(B, -1).t())
    return ((gt - gs) ** 2).sum() / (B * B)


case("sp", {"feature": fs}, {"feature": at_t}, sp)


def pkt(s, t, eps=1e-7):
    def cond(x):
        x = x / (torch.sqrt((x ** 2).sum(1, keepdim=True)) + eps)
        m = (x @ x.t() + 1) / 2
        return m / m.sum(1, keepdim=True)
    ps, pt = cond(s["embedding"]), cond(t["embedding"])
    return torch.mean(pt * torch.log((pt + eps) / (ps + eps)))


case("pkt", {"embedding": es}, {"embedding": et}, pkt)

# CRD's contrast: each anchor against its own memory row and K negatives shared by the batch,
# softmax over 1 + K.
N, D, K = 10, 3, 4
memory = F.normalize(torch.randn(N, D), dim=1)
indices = [2, 7, 0, 5, 9, 3]
negative_rows = [1, 4, 6, 8]


def crd(s, t, tau=0.07):
    anchors = F.normalize(s["anchor"], dim=1)
    positive = (anchors * memory[indices]).sum(1, keepdim=True)
    negative = anchors @ memory[negative_rows].t()
    logits = torch.cat([positive, negative], 1) / tau
    return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))


case("crd contrast", {"anchor": torch.randn(B, D)}, {"memory": memory}, crd,
     {"indices": indices, "negativeRows": negative_rows, "temperature": 0.07})

# Text encoders, layer to layer: two layer pairs each, 3 sequences of 5 positions of which 5, 3
# and 1 are tokens (the rest padding). Written per sequence over its tokens only (slices), so
# that padding handling is checked, not restated.
lengths = [5, 3, 1]
L, H = 5, 2
token_mask = torch.tensor([[1.0 if p < n else 0.0 for p in range(L)] for n in lengths])
Hs, Ht = 4, 6
proj_w, proj_b = torch.randn(Ht, Hs) * 0.4, torch.randn(Ht) * 0.1


def hidden(s, t):
    total = 0
    for k in ("layer0", "layer1"):
        projected = s[k] @ proj_w.t() + proj_b
        squared = sum(F.mse_loss(projected[b, :n], t[k][b, :n], reduction="sum") for b, n in enumerate(lengths))
        total = total + squared / (sum(lengths) * Ht)
    return total


case("hidden", {"layer0": torch.randn(3, L, Hs), "layer1": torch.randn(3, L, Hs)},
     {"layer0": torch.randn(3, L, Ht), "layer1": torch.randn(3, L, Ht)}, hidden,
     extra={"projection.weight": entry(proj_w), "projection.bias": entry(proj_b), "mask": entry(token_mask)})


def attention_probabilities(scale):
    """Softmax over the keys of each sequence's tokens; padded keys exactly 0 (padded queries attend too)."""
    scores = torch.randn(3, H, L, L) * scale
    keep = token_mask[:, None, None, :].bool()
    return torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)


def attention(s, t):
    total = 0
    for k in ("layer0", "layer1"):
        divergence = 0
        for b, n in enumerate(lengths):
            # KL(teacher ‖ student) over the real keys, for each head and real query.
            divergence = divergence + F.kl_div(torch.log(s[k][b, :, :n, :n]), t[k][b, :, :n, :n], reduction="sum")
        total = total + divergence / (sum(lengths) * H)
    return total


case("attention", {"layer0": attention_probabilities(1.0), "layer1": attention_probabilities(2.0)},
     {"layer0": attention_probabilities(1.5), "layer1": attention_probabilities(0.5)}, attention,
     extra={"mask": entry(token_mask)})


# Sentence embeddings (EmbeddingDistillation): unit-length teacher rows, student rows of any length.
D = 8
emb_t = F.normalize(torch.randn(B, D), dim=1)


def embedding(s, t):
    squared = ((s["logits"] - t["logits"]) ** 2).sum(1).mean()
    return squared + 1 - F.cosine_similarity(s["logits"], t["logits"], dim=1).mean()


case("embedding", {"logits": torch.randn(B, D)}, {"logits": emb_t}, embedding)

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "DistillationTests", "Fixtures", "losses_golden.json")
with open(path, "w") as f:
    json.dump({"generator": "scripts/generate_golden_distillation.py", "torch": torch.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
