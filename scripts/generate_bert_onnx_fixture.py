#!/usr/bin/env python3
"""Exports a BERT sentence encoder to ONNX with torch's exporter, with the batch and the
sequence as dynamic axes, and writes onnxruntime's outputs for Distill's import to match.

The exported graph takes three int64 inputs, `input_ids`, `attention_mask` and
`token_type_ids` ([batch, sequence]), and gives two outputs: `sentence_embedding` [batch,
hidden] (mean pooling over the tokens the mask keeps, then L2 normalisation: the
sentence-transformers pipeline of all-MiniLM-L6-v2) and `last_hidden_state` [batch,
sequence, hidden]. `transformers`' BertModel in eager attention, float32.

Without --model (the committed fixture): a tiny BertModel with random weights (seed 0;
vocabulary 96, hidden 32, 2 layers of 4 heads, feed-forward 64, 40 positions), exported by
the torch.export-based exporter (torch's default) to
Tests/ModelFormatsTests/Fixtures/onnx/tiny_bert.onnx and by the TorchScript one to
tiny_bert_legacy.onnx, with tiny_bert.json: four batches of different sizes and lengths
(padded rows, both token types, one sequence at the full 40 positions) and onnxruntime's two
outputs for each (the same for both files, checked here).

    python3 scripts/generate_bert_onnx_fixture.py

With --model DIR (config.json and model.safetensors: all-MiniLM-L6-v2's folder, which
scripts/fetch-minilm.sh fills; not committed, 90 MB): the same export of that model to
--out (default /tmp/all-minilm-l6-v2.onnx), and, beside it (OUT minus .onnx plus
-reference.npz), onnxruntime's sentence embeddings of the 1,000 fortunes quotes of
Tests/ModelFormatsTests/Fixtures/minilm_reference.npz (the ids Hugging Face's tokenizer
made), in batches of 32 quotes of similar lengths padded to their longest. The Swift check
ONNXTextModelTests.testMiniLMExportMatchesOnnxRuntimeAndTheSafetensorsEncoder reads both:

    python3 scripts/generate_bert_onnx_fixture.py --model ~/.cache/distill/all-minilm-l6-v2-0.1.2
    DISTILL_MINILM_ONNX=/tmp/all-minilm-l6-v2.onnx swift test -c release --skip-build \\
        --filter ONNXTextModelTests

Needs torch, transformers, onnx, onnxscript, onnxruntime and numpy.
"""
import argparse
import json
import os

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertConfig, BertModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "ModelFormatsTests", "Fixtures")
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
OUTPUTS = ["sentence_embedding", "last_hidden_state"]


class SentenceEmbedder(nn.Module):
    """BertModel, then mean pooling over the mask and L2 normalisation."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1), hidden


def export(model, path, dynamo):
    """The model with batch and sequence dynamic in every input and output."""
    example = (torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), torch.zeros(2, 4, dtype=torch.long))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes["sentence_embedding"] = {0: "batch"}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    tmp = path + ".tmp"
    torch.onnx.export(model, example, tmp, input_names=INPUTS, output_names=OUTPUTS, dynamic_axes=axes, dynamo=dynamo,
                      external_data=False)
    onnx.checker.check_model(onnx.load(tmp), full_check=True)
    os.replace(tmp, path)
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run(session, model, ids, mask, types):
    """onnxruntime's outputs, and their largest |difference| from PyTorch's."""
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    outputs = session.run(OUTPUTS, feeds)
    with torch.inference_mode():
        theirs = model(*(torch.from_numpy(feeds[n]) for n in INPUTS))
    difference = max(float(np.abs(o - t.numpy()).max()) for o, t in zip(outputs, theirs))
    return outputs, difference


def batch(rng, lengths, length, vocabulary, pairs=False):
    """Rows of ids [CLS]=2 ... [SEP]=3 padded with 0 to `length`; with `pairs`, a second segment of type 1."""
    ids = np.zeros((len(lengths), length), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(4, vocabulary, n)
        ids[row, 0], ids[row, n - 1] = 2, 3
        mask[row, :n] = 1
        if pairs and n > 3:
            types[row, n // 2:n] = 1
    return ids, mask, types


def tiny_fixture():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=40, type_vocab_size=2, pad_token_id=0, attn_implementation="eager")
    bert = BertModel(config, add_pooling_layer=False).eval()
    # Random weights well away from their initial values (LayerNorm's scales around 1).
    with torch.no_grad():
        for name, p in bert.named_parameters():
            scale = 1.0 if "embeddings" in name and p.dim() > 1 else 0.3 if p.dim() > 1 else 0.2
            p.copy_(torch.randn_like(p) * scale + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    model = SentenceEmbedder(bert).eval()
    paths = {"dynamo": os.path.join(FIXTURES, "onnx", "tiny_bert.onnx"), "legacy": os.path.join(FIXTURES, "onnx", "tiny_bert_legacy.onnx")}
    sessions = {kind: export(model, path, kind == "dynamo") for kind, path in paths.items()}
    rng = np.random.default_rng(0)
    batches = [batch(rng, [5, 3], 5, 96), batch(rng, [9, 12, 4], 12, 96, pairs=True), batch(rng, [1], 1, 96),
               batch(rng, [40, 17, 40, 2], 40, 96, pairs=True)]
    cases, worst, between = [], 0.0, 0.0
    for ids, mask, types in batches:
        (embedding, hidden), difference = run(sessions["dynamo"], model, ids, mask, types)
        legacy, legacy_difference = run(sessions["legacy"], model, ids, mask, types)
        worst = max(worst, difference, legacy_difference)
        between = max(between, float(np.abs(legacy[0] - embedding).max()), float(np.abs(legacy[1] - hidden).max()))
        cases.append({"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "token_type_ids": types.tolist(),
                      "sentence_embedding": {"shape": list(embedding.shape), "data": [float(f"{v:.8g}") for v in embedding.reshape(-1)]},
                      "last_hidden_state": {"shape": list(hidden.shape), "data": [float(f"{v:.8g}") for v in hidden.reshape(-1)]}})
    assert between < 1e-5, between
    graphs = {kind: onnx.load(path) for kind, path in paths.items()}
    document = {"generator": "scripts/generate_bert_onnx_fixture.py", "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                "outputs": "onnxruntime on tiny_bert.onnx (tiny_bert_legacy.onnx within %.2g)" % between,
                "opset": {kind: g.opset_import[0].version for kind, g in graphs.items()},
                "operators": {kind: sorted({n.op_type for n in g.graph.node}) for kind, g in graphs.items()},
                "torch_vs_onnxruntime": worst, "batches": cases}
    json_path = os.path.join(FIXTURES, "onnx", "tiny_bert.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(document, f)
    os.replace(json_path + ".tmp", json_path)
    for kind, path in paths.items():
        print(f"wrote {path} ({os.path.getsize(path)} bytes, opset {document['opset'][kind]}, {len(graphs[kind].graph.node)} nodes): "
              + ", ".join(document["operators"][kind]))
    print(f"wrote {json_path} ({os.path.getsize(json_path)} bytes); PyTorch against onnxruntime: largest |Δ| {worst:.3g}; "
          f"the two exports' outputs within {between:.3g}")


def minilm_export(folder, out, dynamo):
    bert = BertModel.from_pretrained(folder, attn_implementation="eager", add_pooling_layer=False).eval()
    model = SentenceEmbedder(bert).eval()
    session = export(model, out, dynamo)
    reference = np.load(os.path.join(FIXTURES, "minilm_reference.npz"))
    lengths, flat = reference["lengths"].astype(np.int64), reference["ids"].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    embeddings = np.zeros((len(lengths), bert.config.hidden_size), dtype=np.float32)
    worst = 0.0
    for first in range(0, len(order), 32):
        rows = order[first:first + 32]
        length = max(lengths[r] for r in rows)
        ids = np.zeros((len(rows), length), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :lengths[r]] = flat[starts[r]:starts[r + 1]]
            mask[i, :lengths[r]] = 1
        (embedding, _), difference = run(session, model, ids, mask, np.zeros_like(ids))
        worst = max(worst, difference)
        embeddings[rows] = embedding
    path = out[:-len(".onnx")] + "-reference.npz" if out.endswith(".onnx") else out + "-reference.npz"
    np.savez(path + ".tmp.npz", embeddings=embeddings)
    os.replace(path + ".tmp.npz", path)
    graph = onnx.load(out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes, opset {graph.opset_import[0].version}, {len(graph.graph.node)} nodes) "
          f"and {path}; PyTorch against onnxruntime on {len(lengths)} quotes: largest |Δ| {worst:.3g}")
    print("operators:", ", ".join(sorted({n.op_type for n in graph.graph.node})))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a BERT folder (config.json, model.safetensors) to export instead of the tiny fixture")
    parser.add_argument("--out", default="/tmp/all-minilm-l6-v2.onnx", help="where --model's export goes")
    parser.add_argument("--legacy", action="store_true", help="--model's export by the TorchScript exporter instead of the default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.model:
        minilm_export(args.model, args.out, not args.legacy)
    else:
        tiny_fixture()


if __name__ == "__main__":
    main()
