#!/usr/bin/env python3
"""An α–β model of a data-parallel training step of Distill's zoo models on 2 to 256 nodes,
from the measurements of scaling.py, and its check against the measured 2-process step.

    python3 bench/distributed/scaling.py --save bench/distributed/measured.json
    python3 bench/distributed/model.py --measure-zoo bench/distributed/zoo-compute.json   # optional: ~3 min
    python3 bench/distributed/model.py --measured bench/distributed/measured.json --zoo bench/distributed/zoo-compute.json

The model, per node (one process a node, one all-reduce ring across the nodes):

    step(p) = compute(b) + exposed_gradient_all_reduce(p) + small_all_reduces(p)

- compute(b) = t_example · b: t_example is the measured 1-process × 1-thread time per example
  (scaling.py's 1x1 run for cnn-student and cnn-teacher; --measure-zoo's short run for the
  other zoo models), b the batch of one node. Linear in b: a small per-node batch runs less
  efficiently than this says, and the optimizer's per-step cost is folded into t_example.
- The gradients, 4·P bytes for P parameters, are summed in buckets of s bytes (Distill: 1 MiB),
  each bucket a ring all-reduce:  T(n, p) = 2(p−1)·α + 2(p−1)/p · n·β.
  A ring all-reduce is a reduce-scatter then an all-gather, each p−1 steps in which every node
  sends one p-th of the buffer to its neighbour: 2(p−1) messages of n/p bytes. The bandwidth term
  2(p−1)/p·n·β is the least any all-reduce can move per node, which is why MPI libraries, Gloo
  and NCCL use the ring (or a variant) for large buffers; its latency term grows linearly in p.
- Backward hides part of the gradient sums.
  exposed = max((1 − h)·T_grad, T_grad − ⅔·compute, T(last bucket)): h is the share hidden
  measured at 2 processes (scaling.py: 1 − wait(overlapped) ÷ wait(after backward)); overlap
  can never hide more than backward lasts (about ⅔ of a step), nor the last bucket, which
  starts when backward ends.
- Synchronised batch norm adds 3 blocking all-reduces of a few hundred bytes per batch-norm
  layer per step, and every step has one more (the loss terms): small all-reduces, modelled as
  recursive doubling, ⌈log₂ p⌉ exchanges each costing 2α (at p = 2 this is the measured
  small-message time, 2α + nβ).

Weak scaling keeps the per-node batch (--node-batch, 128) and multiplies the global batch by p;
strong scaling keeps the global batch (--global-batch, 1024) and divides it. Speed-up is
throughput on p nodes ÷ one node's (one node has no all-reduce); efficiency = speed-up ÷ p.

Networks: "loopback" is the α, β fitted by scaling.py on this machine (the min-of-rounds fit:
the network stack's cost when both ranks have a core); "10GbE" and "IB-100G" are assumptions,
typical published figures rather than measurements (see NETWORKS).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
ZOO = ["mlp", "lenet5", "cnn-student", "cnn-teacher", "resnet8", "resnet20", "resnet32", "resnet56",
       "wrn-16-2", "wrn-40-2", "mobilenetv2"]
NODES = [2, 4, 8, 16, 32, 64, 128, 256]
# Assumed networks (not measured here): α per message, β seconds per byte.
NETWORKS = {
    # 10 Gb/s Ethernet, MPI over kernel TCP: 1.25 GB/s line rate, about 1.1 GB/s of payload;
    # small-message latency of MPI over TCP through one switch is typically 10-20 µs.
    "10GbE": {"alpha_s": 15e-6, "beta_s_per_byte": 1 / 1.1e9,
              "source": "assumed: 10 Gb/s line rate less TCP/IP framing (~1.1 GB/s); 15 µs, typical MPI-over-TCP latency"},
    # 100 Gb/s InfiniBand (EDR, RDMA): 12.5 GB/s line rate, about 12 GB/s in osu_bw; osu_latency
    # about 1 µs; 1.5 µs leaves room for the collective's software.
    "IB-100G": {"alpha_s": 1.5e-6, "beta_s_per_byte": 1 / 12e9,
                "source": "assumed: EDR line rate 12.5 GB/s, ~12 GB/s achieved by OSU osu_bw; ~1 µs osu_latency, 1.5 µs with collective overhead"},
}
BACKWARD_SHARE = 2 / 3


def inspect(distill, model):
    """Parameters and batch-norm layers of a zoo model at Fashion-MNIST's 1×28×28, from `distill inspect`."""
    text = subprocess.run([distill, "inspect", model], capture_output=True, text=True, check=True).stdout
    parameters = int(re.search(r"total parameters: ([\d,]+)", text).group(1).replace(",", ""))
    macs = int(re.search(r"multiply-adds per example: ([\d,]+)", text).group(1).replace(",", ""))
    batch_norms = sum(1 for line in text.splitlines() if re.search(r"\bBatchNorm", line))
    return {"parameters": parameters, "macs": macs, "batch_norms": batch_norms}


def measure_zoo(distill, out_path, images_per_class):
    """Seconds per example of one 1-thread epoch over 10·images_per_class images, per zoo model."""
    results = {}
    for model in ZOO:
        with tempfile.TemporaryDirectory(prefix="zoo-") as out:
            command = [distill, "train", "--model", model, "--labels-per-class", str(images_per_class),
                       "--validation-fraction", "0", "--epochs", "1", "--batch", "128", "--seed", "1", "--json",
                       "--threads", "1", "--out", os.path.join(out, "run")]
            text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        epoch = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"epoch"' in line]
        seconds = [e for e in epoch if e.get("event") == "epoch"][-1]["seconds"]
        results[model] = {"seconds_per_example": seconds / (10 * images_per_class), "images": 10 * images_per_class}
        print(f"{model}: {results[model]['seconds_per_example'] * 1e3:.3f} ms/example", flush=True)
    results["_command"] = " ".join(sys.argv)
    results["_load_average"] = os.getloadavg()
    with open(out_path + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(out_path + ".tmp", out_path)


def ring(n, p, alpha, beta):
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta


def gradient_all_reduce(parameters, p, alpha, beta, bucket):
    total = 4 * parameters
    buckets = max(1, math.ceil(total / bucket))
    return buckets * 2 * (p - 1) * alpha + 2 * (p - 1) / p * total * beta


def small_all_reduces(batch_norms, p, alpha):
    return (3 * batch_norms + 1) * math.ceil(math.log2(p)) * 2 * alpha


def sized_bucket(info, p, net):
    """The bucket whose latency 2(p−1)α is 10% of its transfer 2(p−1)/p·s·β: s = 10·p·α/β, at
    most the whole gradient."""
    return min(10 * p * net["alpha_s"] / net["beta_s_per_byte"], 4 * info["parameters"])


def step_time(info, t_example, b, p, net, hidden, bucket):
    compute = t_example * b
    if p == 1:
        return compute, compute, 0.0, 0.0
    if bucket is None:
        bucket = sized_bucket(info, p, net)
    alpha, beta = net["alpha_s"], net["beta_s_per_byte"]
    grad = gradient_all_reduce(info["parameters"], p, alpha, beta, bucket)
    # The last bucket starts when backward ends: nothing hides it.
    last = ring(min(bucket, 4 * info["parameters"]), p, alpha, beta)
    exposed = max((1 - hidden) * grad, grad - BACKWARD_SHARE * compute, last)
    small = small_all_reduces(info["batch_norms"], p, net["alpha_s"])
    return compute + exposed + small, compute, exposed, small


def human_bytes(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--distill", default=os.path.join(ROOT, ".build", "release", "distill"))
    parser.add_argument("--measured", default=os.path.join(HERE, "measured.json"), help="scaling.py --save output")
    parser.add_argument("--zoo", default=os.path.join(HERE, "zoo-compute.json"), help="--measure-zoo output")
    parser.add_argument("--measure-zoo", metavar="OUT", help="measure every zoo model's 1-thread time per example into OUT and exit")
    parser.add_argument("--zoo-images-per-class", type=int, default=39)
    parser.add_argument("--node-batch", type=int, default=128, help="weak scaling: batch of each node")
    parser.add_argument("--global-batch", type=int, default=1024, help="strong scaling: batch of all nodes together")
    parser.add_argument("--bucket", type=int, default=1 << 20, help="all-reduce bucket bytes (Distill: 1 MiB)")
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--node-speeds", default="1,16",
                        help="compute of a node as a multiple of the measured one thread's (a many-core node: 16); "
                             "full tables for the first, the summary for all")
    args = parser.parse_args()
    if args.measure_zoo:
        measure_zoo(args.distill, args.measure_zoo, args.zoo_images_per_class)
        return

    with open(args.measured) as f:
        measured = json.load(f)
    zoo = {}
    if os.path.exists(args.zoo):
        with open(args.zoo) as f:
            zoo = json.load(f)
    fit = measured["allreduce"]["fit"]
    networks = {"loopback": {"alpha_s": fit["min_s"]["alpha_s"], "beta_s_per_byte": fit["min_s"]["beta_s_per_byte"],
                             "source": f"measured here (allreduce_bench.c, 2 ranks, min of rounds), {measured['started']}"}}
    networks.update(NETWORKS)
    hidden_values = {m: r["hidden_fraction"] for m, r in measured["models"].items() if r.get("hidden_fraction") is not None}
    default_hidden = max(0.0, min(hidden_values.get("cnn-teacher", 0.0), 1.0))

    print(f"# α–β model of a data-parallel step; measurements from {os.path.relpath(args.measured, ROOT)} "
          f"({measured['cpu']}, {measured['isa']}, {measured['started']})")
    print()
    print("| network | α (µs) | β (ns/byte) | bandwidth (GB/s) | source |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, net in networks.items():
        print(f"| {name} | {net['alpha_s'] * 1e6:.2f} | {net['beta_s_per_byte'] * 1e9:.3f} | "
              f"{1 / net['beta_s_per_byte'] / 1e9:.2f} | {net['source']} |")
    print()

    # Per-example compute: scaling.py's 1x1 for the models it ran, else --measure-zoo's.
    infos, t_examples, hidden = {}, {}, {}
    for model in args.models.split(","):
        infos[model] = inspect(args.distill, model)
        if model in measured["models"] and "1x1" in measured["models"][model]:
            t_examples[model] = (1 / measured["models"][model]["1x1"]["examples_per_s"]["median"], "scaling.py 1x1")
        elif model in zoo:
            t_examples[model] = (zoo[model]["seconds_per_example"], f"--measure-zoo ({zoo[model]['images']} images)")
        else:
            print(f"(no compute time for {model}: skipped; run --measure-zoo)")
            continue
        h = hidden_values.get(model, default_hidden)
        hidden[model] = (max(0.0, min(h, 1.0)), "measured" if model in hidden_values else "cnn-teacher's")

    print("| model | parameters | gradient bytes | batch-norm layers | compute ms/example (1 thread) | from | backward hides |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    for model, (t, source) in t_examples.items():
        info = infos[model]
        print(f"| {model} | {info['parameters']:,} | {human_bytes(4 * info['parameters'])} | {info['batch_norms']} | "
              f"{t * 1e3:.3f} | {source} | {hidden[model][0]:.0%} ({hidden[model][1]}) |")
    print()

    # The check: the 2-process step on this machine, predicted against measured.
    print("## Check: 2 processes on this machine, global batch "
          f"{measured['batch']} (64 a process), predicted against measured")
    print()
    print("| model | run | measured ms/step | predicted ms/step (compute + exposed + small) | error |")
    print("| --- | --- | ---: | ---: | ---: |")
    for model in [m for m in measured["models"] if m in t_examples]:
        runs = measured["models"][model]
        for variant, h in (("2x1", hidden[model][0]), ("2x1-after", 0.0)):
            if variant not in runs:
                continue
            steps = runs[variant]["steps"]
            step_measured = runs[variant]["seconds"]["median"] / steps
            sources = [("1x1", t_examples[model][0])]
            if "ceiling" in runs:
                # One of two busy processes: a core's speed while the other core computes too.
                sources.append(("ceiling", 2 / runs["ceiling"]["examples_per_s"]["median"]))
            for compute_name, t in sources:
                for fit_name in ("min_s", "median_s"):
                    net = {"alpha_s": fit[fit_name]["alpha_s"], "beta_s_per_byte": fit[fit_name]["beta_s_per_byte"]}
                    total, compute, exposed, small = step_time(infos[model], t, measured["batch"] // 2, 2, net, h, args.bucket)
                    print(f"| {model} | {variant}; compute from {compute_name}, α β from {fit_name[:-2]}s | "
                          f"{step_measured * 1e3:.2f} | {total * 1e3:.2f} ({compute * 1e3:.2f} + {exposed * 1e3:.2f} + "
                          f"{small * 1e3:.2f}) | {(total - step_measured) / step_measured:+.0%} |")
            wait = runs[variant]["wait_per_step_s"]["median"]
            print(f"| {model} | {variant}: measured wait after backward | {wait * 1e3:.2f} | "
                  f"model's exposed gradient all-reduce (min fit): "
                  f"{(1 - h) * gradient_all_reduce(infos[model]['parameters'], 2, fit['min_s']['alpha_s'], fit['min_s']['beta_s_per_byte'], args.bucket) * 1e3:.2f} | |")
    print()

    speeds = [float(x) for x in args.node_speeds.split(",")]
    scalings = (("Weak scaling", f"{args.node_batch} examples per node", lambda p: args.node_batch, args.node_batch),
                ("Strong scaling", f"global batch {args.global_batch}, {args.global_batch}/p per node",
                 lambda p: args.global_batch / p, args.global_batch))

    def speed_ups(model, t, title, per_node, one_batch, net, bucket):
        """Speed-up at each of NODES, and the first node count whose efficiency is under 50%."""
        cells, below = [], None
        for p in NODES:
            one = t * one_batch
            total, *_ = step_time(infos[model], t, per_node(p), p, net, hidden[model][0], bucket)
            speed_up = (p * one / total) if title == "Weak scaling" else one / total
            if below is None and speed_up / p < 0.5:
                below = p
            cells.append(speed_up)
        return cells, below

    speed = speeds[0]
    for title, label, per_node, one_batch in scalings:
        print(f"## {title} ({label}), {human_bytes(args.bucket)} buckets, nodes of {speed:g}× one thread: "
              "speed-up over one node")
        print()
        for net_name, net in networks.items():
            print(f"### {net_name}")
            print()
            print("| model | " + " | ".join(f"{p}" for p in NODES) + " | efficiency < 50% from |")
            print("| --- | " + " | ".join("---:" for _ in NODES) + " | ---: |")
            for model, (t_one, _) in t_examples.items():
                cells, below = speed_ups(model, t_one / speed, title, per_node, one_batch, net, args.bucket)
                print(f"| {model} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {below or '> 256'} |")
            print()

    for speed in speeds:
        print(f"## Where efficiency falls below 50%, nodes of {speed:g}× one thread "
              f"(nodes; {human_bytes(args.bucket)} buckets / buckets sized s = 10·p·α/β; > 256: not within 256)")
        print()
        columns = [(title, per_node, one_batch, net_name) for title, _, per_node, one_batch in scalings for net_name in networks]
        print("| model | gradient | " + " | ".join(f"{title.split()[0].lower()}, {n}" for title, _, _, n in columns) + " |")
        print("| --- | ---: | " + " | ".join("---:" for _ in columns) + " |")
        for model, (t_one, _) in t_examples.items():
            row = []
            for title, per_node, one_batch, net_name in columns:
                net = networks[net_name]
                _, fixed = speed_ups(model, t_one / speed, title, per_node, one_batch, net, args.bucket)
                _, sized = speed_ups(model, t_one / speed, title, per_node, one_batch, net, None)
                row.append(f"{fixed or '> 256'} / {sized or '> 256'}")
            print(f"| {model} | {human_bytes(4 * infos[model]['parameters'])} | " + " | ".join(row) + " |")
        print()

    print("## Bucket size: per-bucket latency 2(p−1)α under 10% of its transfer 2(p−1)/p·s·β, i.e. s ≥ 10·p·α/β")
    print()
    print("| network | " + " | ".join(f"p = {p}" for p in NODES) + " |")
    print("| --- | " + " | ".join("---:" for _ in NODES) + " |")
    for net_name, net in networks.items():
        print(f"| {net_name} | " + " | ".join(human_bytes(10 * p * net["alpha_s"] / net["beta_s_per_byte"]) for p in NODES) + " |")
    print()
    print("Gradient bytes per model are in the table above: where the bucket needed exceeds them, the whole "
          "gradient is one bucket and the ring's latency 2(p−1)α is paid at least once per step.")


if __name__ == "__main__":
    main()
