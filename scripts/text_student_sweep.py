"""A quick PyTorch sweep of the choices for distilling all-MiniLM-L6-v2 into a text-transformer
student started from some of its layers (docs/text.md, "What limits the small students"):
learning rate, epochs, kept layers, and an optional relational term on the batch's cosine
similarity matrix. It trains the same student as `distill distill --student text-transformer
--init-from-teacher --method embedding` (mean pooling, unit-length output, the loss
‖s − t‖² + 1 − cos(s, t), Adam, a cosine schedule with 5% warm-up, clipping at norm 1) and
scores it the same way (mean cosine with the teacher and the Spearman correlation of 10,000
random pairs' similarities on the held-out quotes), so that a choice can be tried in minutes
before a Distill run measures it. The numbers in the docs come from Distill; this script only
chose what to run. Needs `pip install torch transformers` and the transfer set of
scripts/text_transfer_set.py. Usage:

    python3 scripts/text_student_sweep.py SET_FOLDER [--lr 1e-3] [--epochs 3] [--layers 0]
        [--relational none|mse|pearson|kl] [--relational-weight 1] [--seed 0]
    python3 scripts/text_student_sweep.py SET_FOLDER --noise-ceiling

Other choices: `--intermediate N` narrows the feed-forward blocks, `--dropout P` sets the
student's dropout, `--token-table` adds a trainable per-token vector after the pooling, `--keep-heads K`
keeps each layer's K strongest attention heads, `--pools N,...` halves the sequence N times
after each kept layer by averaging adjacent tokens (Funnel-Transformer's pooling), `--freeze-embeddings` keeps the word embeddings fixed, and `--fit-held-out` trains on the
held-out quotes themselves: not a result, a check of what the student can represent at all.

`--noise-ceiling` trains nothing: it moves each held-out teacher embedding to a given cosine
c from itself in a random direction and prints the similarity Spearman such a student would
have, for c from 0.70 to 0.95 (what mean cosine a target Spearman needs when the errors
have no structure).

The relational terms, over the B(B − 1) off-diagonal entries of the batch's cosine matrices
S (student) and T (teacher): `mse` the mean of (S − T)²; `pearson` 1 − their Pearson
correlation; `kl` each row's softmax at temperature 0.05, KL(T ‖ S), averaged over rows.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import BertModel, BertTokenizerFast

MODEL = os.path.expanduser("~/.cache/distill/all-minilm-l6-v2-0.1.2")


def read_quotes(path):
    """Texts between lines of only `%`, stripped, empty ones dropped (Distill's separator rule)."""
    texts, lines = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line == "%":
                texts.append("\n".join(lines).strip())
                lines = []
            else:
                lines.append(line)
    texts.append("\n".join(lines).strip())
    return [t for t in texts if t]


def pool_pairs(x, mask):
    """Funnel pooling: each pair of adjacent positions becomes the mean of its real tokens;
    a pair of padding stays padding. x [B, L, D], mask [B, L] of 0/1."""
    batch, length, width = x.shape
    if length % 2:
        x, mask = F.pad(x, (0, 0, 0, 1)), F.pad(mask, (0, 1))
        length += 1
    counts = mask.view(batch, length // 2, 2).sum(2)
    sums = (x * mask[..., None]).view(batch, length // 2, 2, width).sum(2)
    return sums / counts.clamp(min=1)[..., None], (counts > 0).float()


def bert_layer(layer, x, mask):
    """One BERT layer written out (transformers' own forward wants its mask prepared by the
    model): masked multi-head attention, residual and LayerNorm, GELU feed-forward."""
    attention = layer.attention.self
    batch, length, width = x.shape
    heads = attention.num_attention_heads
    split = lambda m: m(x).view(batch, length, heads, -1).transpose(1, 2)
    q, k, v = split(attention.query), split(attention.key), split(attention.value)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + (1 - mask[:, None, None, :]) * -1e9
    weights = attention.dropout(scores.softmax(-1)) if hasattr(attention, "dropout") else scores.softmax(-1)
    context = (weights @ v).transpose(1, 2).reshape(batch, length, -1)
    out = layer.attention.output
    x = out.LayerNorm(x + out.dropout(out.dense(context)))
    hidden = F.gelu(layer.intermediate.dense(x))
    return layer.output.LayerNorm(x + layer.output.dropout(layer.output.dense(hidden)))


def funnel_states(model, batch):
    """The encoder run layer by layer, halving the sequence `model.distill_pools[i]` times
    after kept layer i. Returns the last states and their mask [B, L, 1]."""
    mask = batch["attention_mask"].float()
    x = model.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    for layer, pools in zip(model.encoder.layer, model.distill_pools):
        x = bert_layer(layer, x, mask)
        for _ in range(pools):
            x, mask = pool_pairs(x, mask)
    return x, mask.unsqueeze(-1)


def mean_pooled(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    if getattr(model, "distill_pools", None):
        states, mask = funnel_states(model, batch)
    else:
        states = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (states * mask).sum(1) / mask.sum(1)
    table = getattr(model, "distill_table", None)
    if table is not None:  # a per-token vector added after the pooling: mean of the table's rows
        pooled = pooled + (table(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
    head = getattr(model, "distill_head", None)
    return head(pooled) if head is not None else pooled


def narrow_feed_forward(layer, width, activity=None):
    """Keeps the `width` intermediate neurons of a BERT layer with the largest product of
    their input and output weight norms (the rest are cut, as in structured pruning); with
    `activity` (each neuron's mean |GELU output| on some texts), of that and the output norm."""
    up, down = layer.intermediate.dense, layer.output.dense
    score = (activity if activity is not None else up.weight.norm(dim=1)) * down.weight.norm(dim=0)
    keep = torch.sort(torch.topk(score, width).indices).values
    new_up, new_down = torch.nn.Linear(up.in_features, width), torch.nn.Linear(width, down.out_features)
    with torch.no_grad():
        new_up.weight.copy_(up.weight[keep]); new_up.bias.copy_(up.bias[keep])
        new_down.weight.copy_(down.weight[:, keep]); new_down.bias.copy_(down.bias)
    layer.intermediate.dense, layer.output.dense = new_up, new_down


def embed(model, tokenizer, texts, batch=64):
    model.eval()
    with torch.no_grad():
        rows = [F.normalize(mean_pooled(model, tokenizer, texts[k:k + batch]), dim=1) for k in range(0, len(texts), batch)]
    model.train()
    return torch.cat(rows).numpy()


def agreement(student, teacher, pairs=10_000, seed=0):
    """Mean cosine of each text's two unit embeddings, and the Spearman correlation of the
    cosine similarities of random pairs of distinct texts (ties do not occur in floats)."""
    rng = np.random.default_rng(seed)
    n = len(teacher)
    i = rng.integers(0, n, pairs)
    j = (i + 1 + rng.integers(0, n - 1, pairs)) % n
    ranks = lambda x: np.argsort(np.argsort(x))
    a, b = (student[i] * student[j]).sum(1), (teacher[i] * teacher[j]).sum(1)
    return float((student * teacher).sum(1).mean()), float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def relational(kind, s, t):
    n = s.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    ss, tt = s @ s.T, t @ t.T
    if kind == "mse":
        return ((ss - tt)[off] ** 2).mean()
    if kind == "pearson":
        a, b = ss[off] - ss[off].mean(), tt[off] - tt[off].mean()
        return 1 - (a * b).sum() / (a.norm() * b.norm() + 1e-8)
    if kind == "kl":
        logs = F.log_softmax(ss.masked_fill(~off, -1e9) / 0.05, dim=1)
        logt = F.log_softmax(tt.masked_fill(~off, -1e9) / 0.05, dim=1)
        return F.kl_div(logs, logt, log_target=True, reduction="batchmean")
    return torch.zeros(())


def noise_ceiling(folder):
    tokenizer, teacher = BertTokenizerFast.from_pretrained(MODEL), BertModel.from_pretrained(MODEL)
    held = embed(teacher, tokenizer, read_quotes(os.path.join(folder, "held-out"))).astype(np.float64)
    rng = np.random.default_rng(0)
    for c in (0.70, 0.75, 0.80, 0.85, 0.88, 0.90, 0.95):
        noise = rng.standard_normal(held.shape)
        noise -= (noise * held).sum(1, keepdims=True) * held  # orthogonal to each embedding
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        student = c * held + (1 - c * c) ** 0.5 * noise  # unit length, cosine c with the teacher
        print(f"mean cosine {c:.2f}: similarity Spearman {agreement(student, held)[1]:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--layers", default="0", help="the teacher's layers the student keeps, comma-separated")
    parser.add_argument("--relational", choices=["none", "mse", "pearson", "kl"], default="none")
    parser.add_argument("--relational-weight", type=float, default=1)
    parser.add_argument("--intermediate", default="0",
                        help="cut each kept layer's feed-forward block to this many neurons (0: keep all 1,536), or one width per kept layer, comma-separated")
    parser.add_argument("--neuron-score", choices=["weights", "activity"], default="weights",
                        help="with --intermediate: keep the neurons of largest |W1 row|·|W2 column| (Distill's rule), or of mean |activation| on 2,000 training texts times |W2 column|")
    parser.add_argument("--head", action="store_true", help="a trainable 384 x 384 linear map after pooling, started at the identity")
    parser.add_argument("--similarity-weight", type=float, default=0,
                        help="weight of the similarity term: the mean squared error of the student's cosine with every training text's teacher embedding, e C e^T with C the teachers' second moments")
    parser.add_argument("--token-table", action="store_true",
                        help="a trainable vocabulary x 384 table, started at zero, whose rows for a text's tokens are mean-pooled and added to the pooled embedding")
    parser.add_argument("--table-lr", type=float, default=0, help="with --token-table: its learning rate (default: --lr)")
    parser.add_argument("--fit-held-out", action="store_true",
                        help="a capacity check, not a result: train on the held-out quotes themselves (what the student could reach with perfect data)")
    parser.add_argument("--freeze-embeddings", action="store_true", help="keep the teacher's word-embedding table fixed")
    parser.add_argument("--dropout", type=float, default=None, help="the student's dropout rate (default: the teacher's config, 0.1)")
    parser.add_argument("--keep-heads", type=int, default=0,
                        help="keep this many attention heads in each kept layer, those with the largest |W_v rows|·|W_o columns| (0: all 12)")
    parser.add_argument("--pools", default="",
                        help="funnel pooling: after each kept layer, how many times to halve the sequence by averaging adjacent tokens, comma-separated (default: never)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--noise-ceiling", action="store_true", help="print the Spearman of randomly perturbed teacher embeddings, train nothing")
    args = parser.parse_args()
    if args.noise_ceiling:
        return noise_ceiling(args.folder)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    train = read_quotes(os.path.join(args.folder, "train", "fortunes"))
    held = read_quotes(os.path.join(args.folder, "held-out"))
    tokenizer = BertTokenizerFast.from_pretrained(MODEL)
    teacher = BertModel.from_pretrained(MODEL)
    cache = os.path.join(args.folder, "sweep-teacher.npz")
    if os.path.exists(cache):
        saved = np.load(cache)
        teacher_train, teacher_held = saved["train"], saved["held"]
    else:
        start = time.time()
        teacher_train, teacher_held = embed(teacher, tokenizer, train), embed(teacher, tokenizer, held)
        np.savez(cache + ".part.npz", train=teacher_train, held=teacher_held)
        os.replace(cache + ".part.npz", cache)
        print(f"teacher embedded {len(train) + len(held)} texts in {time.time() - start:.0f} s", flush=True)

    student = teacher
    student.encoder.layer = torch.nn.ModuleList([student.encoder.layer[int(k)] for k in args.layers.split(",")])
    student.config.num_hidden_layers = len(student.encoder.layer)
    try:
        widths = [int(w) for w in args.intermediate.split(",")]
    except ValueError:
        parser.error(f"--intermediate {args.intermediate}: give whole numbers of neurons, comma-separated")
    if any(w < 0 or w > 1536 for w in widths):
        parser.error(f"--intermediate {args.intermediate}: each width must be 0 (all) to 1536")
    if len(widths) == 1:
        widths *= len(student.encoder.layer)
    if len(widths) != len(student.encoder.layer):
        parser.error(f"--intermediate {args.intermediate}: one width, or one per layer of --layers {args.layers}")
    if any(widths):
        activity = [None] * len(student.encoder.layer)
        if args.neuron_score == "activity":
            # Mean |GELU output| of each neuron over 2,000 training texts, in the full teacher.
            full = BertModel.from_pretrained(MODEL)
            sums = {}
            hooks = [full.encoder.layer[int(k)].intermediate.register_forward_hook(
                lambda m, i, o, k=int(k): sums.__setitem__(k, sums.get(k, 0) + o.abs().sum((0, 1)).detach()))
                for k in args.layers.split(",")]
            with torch.no_grad():
                for k in range(0, 2000, 64):
                    mean_pooled(full, tokenizer, train[k:k + 64])
            for h in hooks:
                h.remove()
            activity = [sums[int(k)] for k in args.layers.split(",")]
        for layer, act, width in zip(student.encoder.layer, activity, widths):
            if width:
                narrow_feed_forward(layer, width, act)
    if args.pools:
        pools = [int(p) for p in args.pools.split(",")]
        if len(pools) != len(student.encoder.layer) or any(p < 0 or p > 7 for p in pools):
            parser.error(f"--pools {args.pools}: one count 0-7 per layer of --layers {args.layers}")
        student.distill_pools = pools
    if args.head:
        student.distill_head = torch.nn.Linear(384, 384)
        with torch.no_grad():
            student.distill_head.weight.copy_(torch.eye(384)); student.distill_head.bias.zero_()
    if args.token_table:
        student.distill_table = torch.nn.Embedding(student.config.vocab_size, 384)
        torch.nn.init.zeros_(student.distill_table.weight)
    if args.keep_heads:
        width = student.config.hidden_size // student.config.num_attention_heads
        for layer in student.encoder.layer:
            value, out = layer.attention.self.value.weight, layer.attention.output.dense.weight
            score = torch.stack([value[h * width:(h + 1) * width].norm() * out[:, h * width:(h + 1) * width].norm()
                                 for h in range(student.config.num_attention_heads)])
            keep = sorted(torch.topk(score, args.keep_heads).indices.tolist())
            rows = torch.cat([torch.arange(h * width, (h + 1) * width) for h in keep])
            attention = layer.attention.self
            for name in ("query", "key", "value"):
                old = getattr(attention, name)
                new = torch.nn.Linear(old.in_features, len(rows))
                with torch.no_grad():
                    new.weight.copy_(old.weight[rows]); new.bias.copy_(old.bias[rows])
                setattr(attention, name, new)
            old = layer.attention.output.dense
            new = torch.nn.Linear(len(rows), old.out_features)
            with torch.no_grad():
                new.weight.copy_(old.weight[:, rows]); new.bias.copy_(old.bias)
            layer.attention.output.dense = new
            attention.num_attention_heads, attention.all_head_size = args.keep_heads, len(rows)
    print("untrained", agreement(embed(student, tokenizer, held), teacher_held), flush=True)

    if args.dropout is not None:
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = args.dropout
    if args.freeze_embeddings:
        student.embeddings.word_embeddings.weight.requires_grad_(False)
    if args.fit_held_out:
        train, teacher_train = held, teacher_held
    targets = torch.tensor(teacher_train)
    moments = targets.T @ targets / len(targets)  # C = mean of t t^T over the training texts
    table_params = list(student.distill_table.parameters()) if args.token_table else []
    others = [p for p in student.parameters() if p.requires_grad and all(p is not q for q in table_params)]
    groups = [{"params": others}] + ([{"params": table_params, "lr": args.table_lr or args.lr}] if table_params else [])
    optimizer = torch.optim.Adam(groups, lr=args.lr)
    per_epoch = (len(train) + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=args.epochs * per_epoch,
                                                   pct_start=0.05, anneal_strategy="cos")
    lengths = np.array([len(t) for t in train])
    for epoch in range(args.epochs):
        start, total = time.time(), 0.0
        order = rng.permutation(len(train))
        batches = []
        for chunk in (order[k:k + args.batch * 50] for k in range(0, len(order), args.batch * 50)):
            chunk = chunk[np.argsort(lengths[chunk])]  # length buckets, as Distill's
            batches += [chunk[k:k + args.batch] for k in range(0, len(chunk), args.batch)]
        rng.shuffle(batches)
        for indices in batches:
            s = F.normalize(mean_pooled(student, tokenizer, [train[i] for i in indices]), dim=1)
            t = targets[indices]
            loss = ((s - t) ** 2).sum(1).mean() + 1 - (s * t).sum(1).mean()
            loss = loss + args.relational_weight * relational(args.relational, s, t)
            if args.similarity_weight:
                e = s - t
                loss = loss + args.similarity_weight * ((e @ moments) * e).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item()
        cosine, spearman = agreement(embed(student, tokenizer, held), teacher_held)
        print(f"epoch {epoch + 1}: loss {total / len(batches):.4f}, {time.time() - start:.0f} s; "
              f"held-out cosine {cosine:.4f}, similarity Spearman {spearman:.4f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
