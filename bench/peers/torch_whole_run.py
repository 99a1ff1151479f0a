#!/usr/bin/env python3
"""The PyTorch side of the whole-run comparison (run_whole_runs.py): one epoch of
`distill train` or `distill distill` written as a PyTorch user would, from process start to
the test-set score, with Distill's default recipe.

    python3 bench/peers/torch_whole_run.py train --model cnn-teacher --out /tmp/torch-train
    python3 bench/peers/torch_whole_run.py distill --teacher RUN/model.safetensors --cache-directory /tmp/torch-cache --out /tmp/torch-kd

It reads Fashion-MNIST from the same IDX files, normalises as Distill does, holds out a
stratified 10% of each class for validation, and trains one epoch through a `DataLoader`
(shuffled batches of 128): SGD with Nesterov momentum 0.9, learning rate 0.05, weight decay
5e-4 on weights only, a linear warm-up of a tenth of the steps (at most 100) from 1% and a
cosine decay, clipping at norm 2. `distill` adds KD (T = 4, α = 0.9) from the teacher's
logits, computed once over the training images (no gradient, batches of 512) and kept in
--cache-directory, or read from there when a previous run left them (a warm cache). After
the epoch: validation accuracy, the model written, then the test set scored (student, and
teacher for `distill`). It prints one JSON line a phase, flushed at once, so that a reader
of the pipe can time them: {"event": "first_step"} after the first optimizer step,
{"event": "epoch", "seconds": training time of the epoch}, then {"event": "result", ...}.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import zoo_models  # noqa: E402
import recipe  # noqa: E402  (beside this file)

MEAN, STD = 0.2860, 0.3530


def emit(**fields):
    print(json.dumps(fields), flush=True)


def load(root, prefix):
    images = recipe.read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    labels = recipe.read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (torch.from_numpy(images.astype(np.float32)) / 255 - MEAN) / STD
    return x[:, None].contiguous(), torch.from_numpy(labels.astype(np.int64))


def stratified_split(labels, fraction, seed):
    generator = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held.extend(generator.permutation(members)[:int(round(len(members) * fraction))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def predictions(model, images, batch=1000):
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(images[i:i + batch]) for i in range(0, len(images), batch)])


def accuracy(logits, labels):
    return float((logits.argmax(1) == labels).float().mean())


def teacher_logits(args, teacher, images):
    """The teacher's logits over the training images: read from the cache, or computed and kept."""
    os.makedirs(args.cache_directory, exist_ok=True)
    path = os.path.join(args.cache_directory, "teacher-logits.pt")
    if os.path.exists(path):
        return torch.load(path), "loaded"
    logits = predictions(teacher, images, batch=512)
    torch.save(logits, path + ".tmp")
    os.replace(path + ".tmp", path)
    return logits, "built"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["train", "distill"])
    parser.add_argument("--model", default="cnn-student", help="train: the zoo model; distill: the student")
    parser.add_argument("--teacher", help="distill: the teacher's model.safetensors (a cnn-teacher)")
    parser.add_argument("--cache-directory")
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    images, labels = load(args.data, "train")
    test_images, test_labels = load(args.data, "t10k")
    train_rows, validation_rows = stratified_split(labels.numpy(), 0.1, args.seed)
    train_rows = torch.from_numpy(train_rows)
    x, y = images[train_rows], labels[train_rows]
    validation_x, validation_y = images[validation_rows], labels[validation_rows]

    teacher, cached = None, None
    if args.command == "distill":
        from safetensors.torch import load_file
        teacher = zoo_models.make("cnn-teacher")
        state = load_file(args.teacher)
        teacher.load_state_dict({k: v.long() if k.endswith("num_batches_tracked") else v for k, v in state.items()})
        cached, how = teacher_logits(args, teacher, x)
        emit(event="teacher", cache=how)

    model = zoo_models.make(args.model).train()
    loader = DataLoader(TensorDataset(x, y, torch.arange(len(x))), batch_size=args.batch, shuffle=True)
    total = len(loader) * args.epochs
    optimizer, schedule = recipe.sgd_warmup_cosine(model, total)

    temperature, alpha, step, best = 4.0, 0.9, 0, -1.0
    for epoch in range(args.epochs):
        start = time.perf_counter()
        model.train()
        for inputs, targets, index in loader:
            logits = model(inputs)
            loss = F.cross_entropy(logits, targets)
            if cached is not None:
                kd = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(cached[index] / temperature, 1),
                              reduction="batchmean", log_target=True)
                loss = alpha * temperature ** 2 * kd + (1 - alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            optimizer.step()
            schedule.step()
            step += 1
            if step == 1:
                emit(event="first_step")
        seconds = time.perf_counter() - start
        validation = accuracy(predictions(model, validation_x), validation_y)
        if validation > best:
            best = validation
            torch.save(model.state_dict(), os.path.join(args.out, "best.pt"))
        emit(event="epoch", epoch=epoch + 1, seconds=seconds, validation_accuracy=validation)
    torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
    result = {"test_accuracy": accuracy(predictions(model, test_images), test_labels)}
    if teacher is not None:
        result["teacher_test_accuracy"] = accuracy(predictions(teacher, test_images), test_labels)
    emit(event="result", **result)


if __name__ == "__main__":
    main()
