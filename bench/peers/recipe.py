"""What the PyTorch peers share: reading Fashion-MNIST's IDX files, and Distill's default training recipe: SGD with Nesterov momentum 0.9,
weight decay on weights only (tensors of two or more dimensions, as Distill skips biases and
normalisation parameters), and a learning rate that warms up linearly from 1% over
min(100, total/10) steps, then follows a cosine to zero."""
import gzip
import math

import numpy as np
import torch


def read_idx(path):
    """An IDX file (gzip'd), such as Fashion-MNIST's, as a uint8 array of its shape."""
    with gzip.open(path) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def sgd_warmup_cosine(model, total_steps, lr=0.05, weight_decay=5e-4):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=lr, momentum=0.9, nesterov=True)
    warmup = min(100, total_steps // 10)

    def factor(step):
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total_steps - warmup, 1)))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
