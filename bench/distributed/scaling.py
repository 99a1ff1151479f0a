#!/usr/bin/env python3
"""Data-parallel scaling of `distill train` on one machine, side by side in one run, with the
ceiling and PyTorch DDP on Gloo; and MPI_Allreduce's time against message size (α and β).

    python3 bench/distributed/scaling.py                  # 3 repetitions, 10,000 images (50 min at load 8 on 2 cores)
    python3 bench/distributed/scaling.py --quick          # smoke run: 1 repetition, 500 images
    python3 bench/distributed/scaling.py --save bench/distributed/measured.json   # for model.py

For cnn-student and cnn-teacher, every repetition runs each of these once (fresh processes,
the order rotated from one repetition to the next, so no variant always goes first):

  1x1          distill train, 1 process × 1 thread
  2x1          mpirun -np 2 × 1 thread, gradients summed during backward (the default)
  2x1-after    the same with --no-overlap-all-reduce (summed after backward)
  2x1-bound    the same as 2x1 with each rank bound to a core of its own (mpirun --bind-to
               core): no migration between the two cores, where the unbound ranks (and the
               ceiling's processes) go where the scheduler puts them
  2x1-nosync   the same as 2x1 with --no-sync-batch-norm, for models with batch norm: what
               PyTorch's DDP on CPU does (its SyncBatchNorm needs GPU modules)
  ceiling      two independent 1-thread `distill train` processes started at once; the
               throughput is the sum of their examples/s (two copies of the work, no communication)
  ceiling-rank the same with each process at the rank's batch (--batch ÷ 2): a 2x1 rank's own
               work, without the communication. The plain ceiling trains at the whole batch,
               which costs less per example (one optimizer update per 128 examples, not per
               64; larger products), so 2x1 ÷ ceiling also counts what a smaller batch per
               process costs, which any data-parallel run pays (PyTorch DDP too); 2x1 ÷
               ceiling-rank is the cost of the communication and waiting alone
  ddp          PyTorch DistributedDataParallel on Gloo, 2 processes × 1 thread (torch_ddp_peer.py)
  torch-1x1    PyTorch, 1 process × 1 thread

Each Distill run is `distill train --model M --labels-per-class L --validation-fraction 0
--epochs 1 --batch 128 --seed 1 --json --threads 1`; its examples/s are the images trained
(all of them for one process; 78 full global batches for two, the short last batch dropped)
÷ the JSON epoch line's "seconds": the epoch's training loop only, without process start,
data loading, MPI start, evaluation or writing the run folder. PyTorch's time is its
training loop's, measured the same way. The all-reduce wait per step is the epoch line's
"all_reduce_wait_seconds" (rank 0's time waiting after backward for the gradient sums: the
part backward did not hide) ÷ steps; the share backward hides is
1 − wait(2x1) ÷ wait(2x1-after).

Ratios are taken within each repetition and reported as the median (range) over
repetitions: the machine is shared and its load moves.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peers"))
from run_side_by_side import cpu_header  # noqa: E402

MPIRUN = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "--mca", "btl"]  # + main's --btl
VARIANTS = ["1x1", "2x1", "2x1-after", "2x1-bound", "2x1-nosync", "ceiling", "ceiling-rank", "ddp", "torch-1x1"]
LABELS = {
    "1x1": "Distill 1 process × 1 thread",
    "2x1": "Distill 2 ranks × 1 thread, overlapped",
    "2x1-after": "Distill 2 ranks × 1 thread, --no-overlap-all-reduce",
    "2x1-bound": "Distill 2 ranks × 1 thread, each bound to a core",
    "2x1-nosync": "Distill 2 ranks × 1 thread, --no-sync-batch-norm",
    "ceiling": "ceiling: 2 independent 1-thread processes",
    "ceiling-rank": "ceiling at the rank's batch: 2 independent 1-thread processes, batch ÷ 2",
    "ddp": "PyTorch DDP (Gloo), 2 processes × 1 thread",
    "torch-1x1": "PyTorch 1 process × 1 thread",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def last_json(text, event):
    """The last JSON line of `text` whose "event" is `event`."""
    found = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == event:
                found = record
    if found is None:
        raise RuntimeError(f"no {event!r} line in the output:\n{text[-2000:]}")
    return found


class Runner:
    def __init__(self, args):
        self.args = args
        self.images = 10 * args.labels_per_class

    def distill_command(self, model, out, extra=(), batch=None):
        a = self.args
        return [a.distill, "train", "--model", model, "--labels-per-class", str(a.labels_per_class),
                "--validation-fraction", "0", "--epochs", "1", "--batch", str(batch or a.batch), "--seed", str(a.seed),
                "--json", "--threads", "1", "--out", out, *extra]

    def parse_distill(self, output, batch=None):
        epoch, result = last_json(output, "epoch"), last_json(output, "result")
        steps = result["steps"]
        examples = min(steps * (batch or self.args.batch), self.images)
        wait = epoch.get("all_reduce_wait_seconds")
        return {"seconds": epoch["seconds"], "examples": examples, "steps": steps,
                "examples_per_s": examples / epoch["seconds"],
                "wait_per_step_s": None if wait is None else wait / steps}

    def run(self, command, timeout=3600):
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
        return done.stdout

    def distill(self, model, ranks, extra=(), bound=False):
        with tempfile.TemporaryDirectory(prefix="scaling-") as out:
            command = self.distill_command(model, os.path.join(out, "run"), extra)
            if ranks > 1:
                mpirun = [("core" if bound and word == "none" else word) for word in MPIRUN]
                command = mpirun + [self.args.btl, "-np", str(ranks)] + command
            return self.parse_distill(self.run(command))

    def ceiling(self, model, batch=None):
        """Two independent one-thread processes started together (at `batch`, else the whole
        batch): the sum of their examples/s."""
        with tempfile.TemporaryDirectory(prefix="scaling-") as out:
            processes = [subprocess.Popen(self.distill_command(model, os.path.join(out, f"run{i}"), batch=batch),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
            outputs = [p.communicate(timeout=3600) for p in processes]
            for p, (_, err) in zip(processes, outputs):
                if p.returncode != 0:
                    raise RuntimeError(f"a ceiling process exited {p.returncode}:\n{err[-2000:]}")
            runs = [self.parse_distill(o, batch) for o, _ in outputs]
        return {"seconds": max(r["seconds"] for r in runs), "examples": sum(r["examples"] for r in runs),
                "steps": runs[0]["steps"], "examples_per_s": sum(r["examples_per_s"] for r in runs),
                "wait_per_step_s": None, "each_seconds": [r["seconds"] for r in runs]}

    def torch(self, model, world):
        a = self.args
        base = [sys.executable, os.path.join(HERE, "torch_ddp_peer.py"), "--model", model, "--data", a.data,
                "--labels-per-class", str(a.labels_per_class), "--batch", str(a.batch), "--seed", str(a.seed),
                "--threads", "1", "--world-size", str(world), "--port", str(free_port())]
        processes = [subprocess.Popen(base + ["--rank", str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for r in range(world)]
        outputs = [p.communicate(timeout=3600) for p in processes]
        for p, (_, err) in zip(processes, outputs):
            if p.returncode != 0:
                raise RuntimeError(f"torch_ddp_peer.py exited {p.returncode}:\n{err[-2000:]}")
        epoch = last_json(outputs[0][0], "epoch")
        return {"seconds": epoch["seconds"], "examples": epoch["examples"], "steps": epoch["steps"],
                "examples_per_s": epoch["examples"] / epoch["seconds"], "wait_per_step_s": None}

    def variant(self, model, name):
        if name == "1x1":
            return self.distill(model, 1)
        if name == "2x1":
            return self.distill(model, 2)
        if name == "2x1-after":
            return self.distill(model, 2, ["--no-overlap-all-reduce"])
        if name == "2x1-bound":
            return self.distill(model, 2, bound=True)
        if name == "2x1-nosync":
            return self.distill(model, 2, ["--no-sync-batch-norm"])
        if name == "ceiling":
            return self.ceiling(model)
        if name == "ceiling-rank":
            return self.ceiling(model, batch=self.args.batch // 2)
        if name == "ddp":
            return self.torch(model, 2)
        if name == "torch-1x1":
            return self.torch(model, 1)
        raise ValueError(name)


def has_batch_norm(distill, model):
    text = subprocess.run([distill, "inspect", model], capture_output=True, text=True, check=True).stdout
    return "BatchNorm" in text


def allreduce_bench(args):
    """Builds allreduce_bench.c with mpicc and runs it on 2 ranks; returns its JSON lines."""
    build = tempfile.mkdtemp(prefix="allreduce-")
    try:
        binary = os.path.join(build, "allreduce_bench")
        subprocess.run(["mpicc", "-O2", "-o", binary, os.path.join(HERE, "allreduce_bench.c")], check=True)
        out = subprocess.run(MPIRUN + [args.btl, "-np", "2", binary, str(args.allreduce_max_bytes), str(args.allreduce_seconds)],
                             capture_output=True, text=True, check=True, timeout=1800).stdout
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def fit_alpha_beta(points, key, ranks=2):
    """Fits T(n) = 2(p−1)·α + 2(p−1)/p·n·β (ring all-reduce) to measured (bytes, seconds) by
    least squares on relative error (each point weighted 1/T, so the microsecond points count
    as much as the 100-millisecond ones). Returns α (s), β (s/byte)."""
    a_scale, b_scale = 2 * (ranks - 1), 2 * (ranks - 1) / ranks
    # Minimise Σ ((a + b·n − T) / T)² over a, b: 2×2 normal equations.
    s11 = s12 = s22 = r1 = r2 = 0.0
    for point in points:
        n, t = point["bytes"], point[key]
        w = 1 / (t * t)
        s11 += w
        s12 += w * n
        s22 += w * n * n
        r1 += w * t
        r2 += w * n * t
    det = s11 * s22 - s12 * s12
    a = (r1 * s22 - r2 * s12) / det
    b = (s11 * r2 - s12 * r1) / det
    return a / a_scale, b / b_scale


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def fmt(s, scale=1.0, digits=0):
    if s is None:
        return "–"
    f = f"{{:,.{digits}f}}"
    return f"{f.format(s['median'] * scale)} ({f.format(s['min'] * scale)}–{f.format(s['max'] * scale)})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--distill", default=os.path.join(ROOT, ".build", "release", "distill"))
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--models", default="cnn-student,cnn-teacher")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--labels-per-class", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--allreduce-max-bytes", type=int, default=64 << 20)
    parser.add_argument("--allreduce-seconds", type=float, default=0.5, help="time spent on each message size")
    parser.add_argument("--btl", default="self,vader",
                        help="Open MPI's byte transfer layers: self,vader (shared memory, what mpirun picks for "
                             "ranks on one machine) or self,tcp (loopback TCP: the path between machines)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, 500 images, 16 MiB all-reduce")
    parser.add_argument("--save", help="write every measurement as JSON here (model.py reads it)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.labels_per_class, args.allreduce_max_bytes, args.allreduce_seconds = 1, 50, 16 << 20, 0.1
    if not os.path.exists(args.distill):
        sys.exit(f"Error: no distill binary at {args.distill} (swift build -c release --product distill, or --distill PATH)")
    models = args.models.split(",")
    variants = args.variants.split(",")
    for name in variants:
        if name not in VARIANTS:
            sys.exit(f"Error: unknown variant {name!r} (known: {', '.join(VARIANTS)})")

    cpu, isa = cpu_header()
    load = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"# CPU: {cpu}, {isa}, {os.cpu_count()} cores; {platform.platform()}")
    print(f"# {started:%Y-%m-%d %H:%M} UTC, load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"# {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}: {args.repeats} repetition(s), "
          f"{10 * args.labels_per_class} images, global batch {args.batch}", flush=True)

    points = allreduce_bench(args)
    fits = {key: fit_alpha_beta(points, key) for key in ("median_s", "min_s")}

    runner = Runner(args)
    runs = {m: {v: [] for v in variants} for m in models}
    for m in models:
        skip = set() if has_batch_norm(args.distill, m) else {"2x1-nosync"}
        chosen = [v for v in variants if v not in skip]
        for r in range(args.repeats):
            order = chosen[r % len(chosen):] + chosen[:r % len(chosen)]
            for v in order:
                result = runner.variant(m, v)
                runs[m][v].append(result)
                wait = "" if result["wait_per_step_s"] is None else f", wait {result['wait_per_step_s'] * 1e3:.2f} ms/step"
                print(f"  {m} rep {r + 1} {v}: {result['seconds']:.2f} s, {result['examples_per_s']:,.0f} examples/s{wait}",
                      flush=True)
    ended = datetime.datetime.now(datetime.timezone.utc)
    load_end = os.getloadavg()

    print()
    print(f"MPI_Allreduce, 2 ranks, --mca btl {args.btl} (floats, MPI_SUM); time per call, median and min of rounds:")
    print()
    print("| bytes | median µs | min µs |")
    print("| ---: | ---: | ---: |")
    for p in points:
        print(f"| {p['bytes']:,} | {p['median_s'] * 1e6:,.1f} | {p['min_s'] * 1e6:,.1f} |")
    print()
    for key, (alpha, beta) in fits.items():
        print(f"fit on {key[:-2]}s: α = {alpha * 1e6:.2f} µs, β = {beta * 1e9:.3f} ns/byte "
              f"({1 / beta / 1e9:.2f} GB/s); T(n, 2) = 2α + n·β")
    print()

    results = {}
    for m in models:
        rows = {v: runs[m][v] for v in variants if runs[m][v]}
        results[m] = {v: {"examples_per_s": summary([x["examples_per_s"] for x in xs]),
                          "seconds": summary([x["seconds"] for x in xs]),
                          "wait_per_step_s": summary([x["wait_per_step_s"] for x in xs]),
                          "steps": xs[0]["steps"], "examples": xs[0]["examples"], "runs": xs}
                      for v, xs in rows.items()}
        print(f"### {m}")
        print()
        print("| run | examples/s | epoch s | all-reduce wait ms/step |")
        print("| --- | ---: | ---: | ---: |")
        for v, xs in rows.items():
            r = results[m][v]
            print(f"| {LABELS[v]} | {fmt(r['examples_per_s'])} | {fmt(r['seconds'], digits=2)} | "
                  f"{fmt(r['wait_per_step_s'], 1e3, 2)} |")
        print()

        def ratio(a, b):
            if a not in rows or b not in rows:
                return None
            return summary([x["examples_per_s"] / y["examples_per_s"] for x, y in zip(rows[a], rows[b])])
        ratios = {
            "2x1 ÷ 1x1 (speed-up)": ratio("2x1", "1x1"),
            "2x1 ÷ ceiling": ratio("2x1", "ceiling"),
            "2x1 ÷ ceiling at the rank's batch": ratio("2x1", "ceiling-rank"),
            "2x1 (no sync BN) ÷ ceiling at the rank's batch": ratio("2x1-nosync", "ceiling-rank"),
            "ceiling ÷ 1x1": ratio("ceiling", "1x1"),
            "ceiling at the rank's batch ÷ ceiling": ratio("ceiling-rank", "ceiling"),
            "2x1 ÷ PyTorch DDP": ratio("2x1", "ddp"),
            "2x1 (no sync BN) ÷ PyTorch DDP": ratio("2x1-nosync", "ddp"),
            "2x1-after ÷ 2x1": ratio("2x1-after", "2x1"),
            "PyTorch DDP ÷ PyTorch 1x1": ratio("ddp", "torch-1x1"),
            "1x1 ÷ PyTorch 1x1": ratio("1x1", "torch-1x1"),
        }
        results[m]["ratios"] = ratios
        print("| ratio (same repetition) | median (range) |")
        print("| --- | ---: |")
        for name, s in ratios.items():
            if s is not None:
                print(f"| {name} | {fmt(s, digits=2)} |")
        if "2x1" in rows and "2x1-after" in rows:
            overlapped = results[m]["2x1"]["wait_per_step_s"]["median"]
            after = results[m]["2x1-after"]["wait_per_step_s"]["median"]
            hidden = 1 - overlapped / after if after > 0 else None
            results[m]["hidden_fraction"] = hidden
            print()
            print(f"All-reduce wait per step: {after * 1e3:.2f} ms summed after backward, {overlapped * 1e3:.2f} ms "
                  f"overlapped: backward hides {hidden:.0%} of it (medians)." if hidden is not None else
                  "All-reduce wait after backward is zero: nothing to hide.")
        print()
    print(f"# ended {ended:%Y-%m-%d %H:%M} UTC, load average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")

    if args.save:
        record = {"command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), "cpu": cpu, "isa": isa,
                  "cores": os.cpu_count(), "started": started.isoformat(timespec="seconds"),
                  "ended": ended.isoformat(timespec="seconds"), "load_start": load, "load_end": load_end,
                  "images": 10 * args.labels_per_class, "batch": args.batch, "repeats": args.repeats, "btl": args.btl,
                  "allreduce": {"points": points, "fit": {k: {"alpha_s": a, "beta_s_per_byte": b} for k, (a, b) in fits.items()}},
                  "models": results}
        tmp = args.save + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.save)


if __name__ == "__main__":
    main()
