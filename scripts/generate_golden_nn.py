#!/usr/bin/env python3
"""Regenerates Tests/NeuralNetTests/Fixtures/nn_golden.json: PyTorch's values for layers
(forward, input and parameter gradients, batch-norm running statistics), optimizers over
several steps, learning-rate schedules and gradient clipping.

    pip install torch transformers && python3 scripts/generate_golden_nn.py
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
import zoo_models  # noqa: E402

torch.manual_seed(0)


def values(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def tensor_entry(t):
    return {"shape": list(t.shape), "data": values(t)}


layers = []


def layer_case(name, kind, module, input_shape, params=None, train=True):
    """kind tells the Swift test how to build the layer; the state_dict carries the weights."""
    module.train(train)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.5)
        for bname, b in module.named_buffers():
            if "running_var" in bname:
                b.copy_(torch.rand(b.shape) + 0.5)
            elif "running_mean" in bname:
                b.copy_(torch.randn(b.shape) * 0.1)
    state_before = {k: tensor_entry(v.float()) for k, v in module.state_dict().items()}
    x = torch.randn(*input_shape, requires_grad=True)
    y = module(x)
    upstream = torch.randn(y.shape)
    (y * upstream).sum().backward()
    layers.append({
        "name": name, "kind": kind, "params": params or {}, "training": train,
        "state": state_before,
        "input": tensor_entry(x), "output": tensor_entry(y), "upstream": values(upstream),
        "inputGrad": values(x.grad),
        "paramGrads": {k: values(p.grad) for k, p in module.named_parameters()},
        "stateAfter": {k: tensor_entry(v.float()) for k, v in module.state_dict().items()},
    })


layer_case("linear", "linear", nn.Linear(5, 3), (4, 5), {"in": 5, "out": 3})
layer_case("conv groups 2 stride 2", "conv2d", nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 7, 7),
           {"in": 4, "out": 6, "kernel": 3, "stride": 2, "padding": 1, "groups": 2})
layer_case("batchnorm2d train", "batchnorm", nn.BatchNorm2d(3), (4, 3, 5, 5), {"features": 3})
layer_case("batchnorm1d train", "batchnorm", nn.BatchNorm1d(4), (6, 4), {"features": 4})
layer_case("batchnorm2d eval", "batchnorm", nn.BatchNorm2d(3), (2, 3, 4, 4), {"features": 3}, train=False)
layer_case("layernorm", "layernorm", nn.LayerNorm([4]), (3, 2, 4), {"shape": [4]})
layer_case("basic block downsample", "basicblock", zoo_models.BasicBlock(3, 5, 2), (2, 3, 8, 8), {"in": 3, "out": 5, "stride": 2})
layer_case("basic block identity", "basicblock", zoo_models.BasicBlock(4, 4, 1), (2, 4, 6, 6), {"in": 4, "out": 4, "stride": 1})
layer_case("wide block shortcut", "wideblock", zoo_models.WideBasicBlock(3, 6, 2), (2, 3, 8, 8), {"in": 3, "out": 6, "stride": 2})
layer_case("inverted residual", "invertedresidual", zoo_models.InvertedResidual(4, 4, 1, 3), (2, 4, 6, 6),
           {"in": 4, "out": 4, "stride": 1, "expansion": 3})
layer_case("cnn-student model", "zoo:cnn-student", zoo_models.make("cnn-student", width=0.25, input_size=8), (2, 1, 8, 8),
           {"width": 0.25, "inputSize": 8})

# Optimizers: loss = Σ c·θ² + d·θ over two parameters, several steps.
shapes = [(3, 4), (4,)]
init = [torch.randn(s) for s in shapes]
cs = [torch.rand(s) + 0.5 for s in shapes]
ds = [torch.randn(s) for s in shapes]
optimizers = []


def run_optimizer(name, make, steps=6, groups=None):
    params = [p.clone().requires_grad_() for p in init]
    opt = make(params)
    trajectory = []
    for _ in range(steps):
        opt.zero_grad()
        sum((c * p * p + d * p).sum() for p, c, d in zip(params, cs, ds)).backward()
        opt.step()
        trajectory.append([values(p) for p in params])
    optimizers.append({"name": name, "trajectory": trajectory})


run_optimizer("sgd", lambda p: torch.optim.SGD(p, lr=0.1))
run_optimizer("sgd momentum nesterov decay", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01))
run_optimizer("sgd momentum dampening", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.1))
run_optimizer("adam decay", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01))
run_optimizer("adamw", lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1))
run_optimizer("sgd groups", lambda p: torch.optim.SGD([{"params": [p[0]], "lr": 0.1}, {"params": [p[1]], "lr": 0.01, "weight_decay": 0.1}], lr=0.1, momentum=0.9))

# Schedules: the learning rate before each of 40 steps, base lr 1.
schedules = []


def run_schedule(name, make, steps=40):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make(opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    schedules.append({"name": name, "rates": rates})


run_schedule("step", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5))
run_schedule("multistep", lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[5, 12, 30], gamma=0.3))
run_schedule("cosine", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=30, eta_min=0.05))
run_schedule("warmup cosine", lambda o: torch.optim.lr_scheduler.SequentialLR(o, [
    torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=5),
    torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=35)], milestones=[5]))
run_schedule("onecycle", lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=40))

# Gradient clipping.
grads = [torch.randn(3, 4) * 3, torch.randn(5) * 3]
params = [torch.zeros_like(g, requires_grad=True) for g in grads]
for p, g in zip(params, grads):
    p.grad = g.clone()
norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=2.0))
clipping = {"grads": [values(g) for g in grads], "shapes": [list(g.shape) for g in grads], "maxNorm": 2.0,
            "norm": norm, "clipped": [values(p.grad) for p in params]}

# Added for issue 15 (text encoders; appended, so the values above keep theirs): Hugging
# Face's BERT modules (transformers, eager attention) as the reference for ours, in
# evaluation mode (no dropout), with padding masks. Inputs are token ids, a 0/1 attention
# mask and token types; a float input (hidden states) where the module takes one.
from transformers import BertConfig  # noqa: E402
from transformers.models.bert import modeling_bert as hf_bert  # noqa: E402

text_config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
                         max_position_embeddings=12, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
                         attn_implementation="eager")
text_config_entry = {"vocab": 20, "hidden": 8, "layers": 2, "heads": 2, "intermediate": 16, "positions": 12, "types": 2,
                     "epsilon": 1e-12}
text_ids = [[2, 7, 19, 7, 0], [5, 1, 3, 3, 11]]
text_mask = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
text_types = [[0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
text_layers = []


def additive_mask(mask):
    return (1.0 - torch.tensor(mask, dtype=torch.float32))[:, None, None, :] * torch.finfo(torch.float32).min


def text_case(name, kind, module, run, float_input_shape=None):
    """run(module, x) gives the output; x is a float input of float_input_shape, or None."""
    module.eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.5)
    state = {k: tensor_entry(v.float()) for k, v in module.state_dict().items() if not k.endswith("position_ids")}
    x = torch.randn(*float_input_shape, requires_grad=True) if float_input_shape else None
    y = run(module, x)
    upstream = torch.randn(y.shape)
    (y * upstream).sum().backward()
    entry = {"name": name, "kind": kind, "config": text_config_entry, "state": state,
             "ids": sum(text_ids, []), "mask": sum(text_mask, []), "types": sum(text_types, []), "shape": [2, 5],
             "output": tensor_entry(y), "upstream": values(upstream),
             "paramGrads": {k: values(p.grad) for k, p in module.named_parameters() if p.grad is not None}}
    if x is not None:
        entry["input"] = tensor_entry(x)
        entry["inputGrad"] = values(x.grad)
    text_layers.append(entry)


def first(output):
    """The hidden states of a module that returns them alone or first in a tuple (versions differ)."""
    return output[0] if isinstance(output, tuple) else output


def masked_mean(hidden, mask):
    m = torch.tensor(mask, dtype=torch.float32)[:, :, None]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


text_case("embedding repeated ids", "embedding", nn.Embedding(20, 8), lambda m, x: m(torch.tensor(text_ids)))
text_case("bert embeddings", "embeddings", hf_bert.BertEmbeddings(text_config),
          lambda m, x: m(input_ids=torch.tensor(text_ids), token_type_ids=torch.tensor(text_types)))
text_case("self attention masked", "selfAttention", hf_bert.BertSelfAttention(text_config),
          lambda m, x: first(m(x, attention_mask=additive_mask(text_mask))), (2, 5, 8))
text_case("attention block masked", "attention", hf_bert.BertAttention(text_config),
          lambda m, x: first(m(x, attention_mask=additive_mask(text_mask))), (2, 5, 8))
text_case("encoder layer masked", "layer", hf_bert.BertLayer(text_config),
          lambda m, x: first(m(x, attention_mask=additive_mask(text_mask))), (2, 5, 8))
text_case("bert model mean pooled", "modelMean", hf_bert.BertModel(text_config, add_pooling_layer=False),
          lambda m, x: masked_mean(m(input_ids=torch.tensor(text_ids), attention_mask=torch.tensor(text_mask),
                                     token_type_ids=torch.tensor(text_types)).last_hidden_state, text_mask))
text_case("bert model cls pooled", "modelCLS", hf_bert.BertModel(text_config, add_pooling_layer=False),
          lambda m, x: m(input_ids=torch.tensor(text_ids), attention_mask=torch.tensor(text_mask),
                         token_type_ids=torch.tensor(text_types)).last_hidden_state[:, 0])

fixture = {"generator": "scripts/generate_golden_nn.py", "torch": torch.__version__, "layers": layers,
           "optimizerInit": {"params": [values(p) for p in init], "shapes": [list(s) for s in shapes],
                             "c": [values(c) for c in cs], "d": [values(d) for d in ds]},
           "optimizers": optimizers, "schedules": schedules, "clipping": clipping, "textLayers": text_layers}
path = os.path.join(os.path.dirname(__file__), "..", "Tests", "NeuralNetTests", "Fixtures", "nn_golden.json")
with open(path + ".tmp", "w") as f:
    json.dump(fixture, f, separators=(",", ":"))
os.replace(path + ".tmp", path)
print(f"wrote {len(layers)} layers, {len(optimizers)} optimizers, {len(schedules)} schedules, {len(text_layers)} text layers to {os.path.normpath(path)}")
