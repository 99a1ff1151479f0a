#!/usr/bin/env python3
"""Reads a run folder's TensorBoard event files the way TensorBoard does and prints its
scalars as JSON: {"tag": [[step, value], ...], ...}, points in the order written.

usage: read_tensorboard.py RUN_DIRECTORY

The oracle for Distill's TensorBoardWriter (Tests/DistillationTests/TensorBoardWriterTests.swift):
TensorBoard's own EventAccumulator, not a second reader of ours. Exits 2 when tensorboard
is not installed (make test installs it with pip), 1 when the folder has no event file.
"""
import json
import os
import sys


def main(args):
    if len(args) != 1:
        sys.exit(__doc__)
    directory = args[0]
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError as error:
        print(f"read_tensorboard.py: tensorboard is not importable ({error}); pip install tensorboard",
              file=sys.stderr)
        sys.exit(2)
    if not os.path.isdir(directory) or not any("tfevents" in name for name in os.listdir(directory)):
        print(f"read_tensorboard.py: {directory}: no event files (events.out.tfevents.*)", file=sys.stderr)
        sys.exit(1)
    # Keep every point: the default keeps a 10,000-point reservoir sample per tag.
    accumulator = event_accumulator.EventAccumulator(directory, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    scalars = {tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
               for tag in accumulator.Tags()["scalars"]}
    print(json.dumps(scalars, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
