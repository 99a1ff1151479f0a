#!/usr/bin/env python3
"""Regenerates Tests/ModelFormatsTests/Fixtures: zoo models built in PyTorch
(scripts/zoo_models.py), with random weights and batch-norm statistics, saved with
`safetensors.torch.save_file(model.state_dict())`, and their evaluation-mode logits on
fixed inputs (zoo_logits.json). Distill must load each file by name, unchanged, and give
the same logits.

    pip install torch safetensors && python3 scripts/generate_zoo_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import zoo_models  # noqa: E402

torch.manual_seed(0)
out_dir = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelFormatsTests", "Fixtures")
# Small widths keep the committed files small; the architectures are the zoo's.
models = {
    "mlp": {"hidden": [32]},
    "lenet5": {},
    "cnn-student": {},
    "cnn-teacher": {"width": 0.25},
    "resnet8": {},
    "wrn-16-2": {"width": 0.25},
    "mobilenetv2": {"width": 0.25},
}
x = torch.randn(4, 1, 28, 28)
cases = []
for name, options in models.items():
    model = zoo_models.make(name, **options)
    with torch.no_grad():
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape) * 0.1)
            elif buffer_name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape) + 0.5)
            elif buffer_name.endswith("num_batches_tracked"):
                buffer.fill_(7)
        for parameter_name, parameter in model.named_parameters():
            if "bn" in parameter_name or parameter.dim() == 1:
                parameter.add_(torch.randn(parameter.shape) * 0.1)
    model.eval()
    with torch.no_grad():
        logits = model(x)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"{name}.safetensors"))
    cases.append({"name": name, "options": options, "logits": [float(v) for v in logits.reshape(-1)],
                  "parameters": sum(p.numel() for p in model.parameters())})
with open(os.path.join(out_dir, "zoo_logits.json"), "w") as f:
    json.dump({"generator": "scripts/generate_zoo_fixtures.py", "torch": torch.__version__,
               "input": {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1)]}, "cases": cases}, f)
print("wrote", ", ".join(f"{c['name']} ({c['parameters']} parameters)" for c in cases))
