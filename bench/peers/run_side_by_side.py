#!/usr/bin/env python3
"""Runs DistillBench and a peer (PyTorch, or onnxruntime for the ort-* cases) on the same
cases, alternating, and prints the speed ratio peer time ÷ Distill time (above 1: Distill is
faster) from medians, then the peak memory of the same processes.

    swift build -c release --product DistillBench
    python3 bench/peers/run_side_by_side.py [--repeats 5] [--iterations N] [--threads 2] [--cases sgemm,conv]
    python3 bench/peers/run_side_by_side.py --cases students     # the literature's students (20 cases)
    python3 bench/peers/run_side_by_side.py --cases ort          # inference against onnxruntime
    python3 bench/peers/run_side_by_side.py --cases ort-int8     # our int8 against onnxruntime on its QDQ export
    python3 bench/peers/run_side_by_side.py --cases int8-float   # our int8 against our float32 (the same model)

Each repetition runs Distill (a fresh process: one warm-up, then the timed steps) and then the
peer (a fresh process too: bench/peers/torch_peer.py or ort_peer.py), and keeps each side's
median step time. --iterations sets the timed steps of every case; without it each case uses
its own count (the table's last column). The table reports the median over repetitions and
the range of the per-repetition ratios: these machines are shared and noisy (±30%), so only
same-run ratios are compared. The output starts with the CPU model and vector ISA.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BENCH = os.path.join(ROOT, ".build", "release", "DistillBench")

# case: (label, Distill's case, batch, the peer's case, timed steps per process by default)
CASES = {
    "sgemm": ("sgemm 1024×1024×1024", "sgemm", 128, "sgemm", 10),
    "sgemm-mlp": ("sgemm [128, 784]·[784, 128]", "sgemm-mlp", 128, None, 100),
    "conv": ("conv2d fwd+bwd [128,32,28,28]→64, 3×3, pad 1", "conv", 128, "conv", 10),
    "cnn": ("small CNN train step, batch 128", "cnn", 128, "cnn", 10),
    "denormal": ("denormal elementwise, flush-to-zero on", "denormal", 128, "denormal", 10),
    "denormal-off": ("denormal elementwise, flush-to-zero off", "denormal", 128, "denormal", 10),
}
MODEL_CASES = {
    "train-cnn-teacher": ("cnn-teacher train step, batch 128", "train-cnn-teacher", 128, "train-cnn-teacher", 10),
    "train-cnn-student": ("cnn-student train step, batch 128", "train-cnn-student", 128, "train-cnn-student", 30),
    "train-mlp": ("mlp 784-128-10 train step, batch 128", "train-mlp", 128, "train-mlp", 100),
    "infer-cnn-student-1": ("cnn-student inference, batch 1", "infer-cnn-student", 1, "infer-cnn-student", 5),
    "infer-mlp-1": ("mlp inference, batch 1", "infer-mlp", 1, "infer-mlp", 5),
    "infer-cnn-student-256": ("cnn-student inference, batch 256", "infer-cnn-student", 256, "infer-cnn-student", 30),
    "infer-mlp-256": ("mlp inference, batch 256", "infer-mlp", 256, "infer-mlp", 100),
    "infer-cnn-teacher-256": ("cnn-teacher inference, batch 256 (a teacher-cache pass)", "infer-cnn-teacher", 256, "infer-cnn-teacher", 10),
    "train-cnn-student-32": ("cnn-student train step, batch 32", "train-cnn-student", 32, "train-cnn-student", 30),
    "train-cnn-student-512": ("cnn-student train step, batch 512", "train-cnn-student", 512, "train-cnn-student", 10),
    # Cold: Distill builds its teacher-output cache inside the timing (a fresh cache directory
    # each epoch); PyTorch runs the teacher on every batch. Warm: Distill loads the cache the
    # warm-up built; PyTorch looks the logits up in a tensor computed before the timing.
    "distill-epoch-cold": ("KD epoch, cold: Distill builds its teacher cache, PyTorch runs the teacher online",
                           "distill-epoch-cold", 128, "distill-epoch-online", 1),
    "distill-epoch-warm": ("KD epoch, warm: both with teacher outputs computed beforehand", "distill-epoch", 128, "distill-epoch-cached", 1),
}
# The distillation literature's students: a training step at 3×32×32 (-c3) and 1×28×28 (-c1).
STUDENTS = ["resnet20", "resnet56", "wrn-16-2", "wrn-40-2", "mobilenetv2"]
STUDENT_CASES = {}
for model in STUDENTS:
    for channels, shape in (("c3", "3×32×32"), ("c1", "1×28×28")):
        for batch in (128, 32):
            name = f"train-{model}-{channels}-b{batch}"
            steps = {"wrn-40-2": 3, "resnet56": 5}.get(model, 10) * (1 if batch == 128 else 2)
            STUDENT_CASES[name] = (f"{model} train step, {shape}, batch {batch}", name, batch, name, steps)
# Inference against onnxruntime on the model DistillBench exports (same weights).
ORT_CASES = {}
for model, channels, shape in (("cnn-student", "c1", "1×28×28"), ("resnet20", "c3", "3×32×32"), ("mobilenetv2", "c3", "3×32×32")):
    for batch in (1, 256):
        name = f"infer-{model}-{channels}-b{batch}"
        ORT_CASES["ort-" + name] = (f"{model} inference, {shape}, batch {batch}", name, batch, name, 5 if batch == 1 else 10)
# Our int8 models against onnxruntime running their QDQ export (same weights and calibration),
# and against our float32 models (the same zoo model, seed-0 weights: the peer is DistillBench's
# float twin of the case, in a fresh process like every peer).
ORT_INT8_CASES, INT8_FLOAT_CASES = {}, {}
for model in ("cnn-student", "resnet8"):
    for batch in (1, 256):
        name, steps = f"int8-infer-{model}-c1-b{batch}", 20 if batch == 1 else 10
        ORT_INT8_CASES["ort-" + name] = (f"{model} int8 inference, 1×28×28, batch {batch}", name, batch,
                                         f"infer-{model}-c1-b{batch}", steps)
        INT8_FLOAT_CASES["float-" + name] = (f"{model} int8 inference against float32, 1×28×28, batch {batch}", name, batch,
                                             f"infer-{model}-c1", steps)
CASES.update(MODEL_CASES)
CASES.update(STUDENT_CASES)
CASES.update(ORT_CASES)
CASES.update(ORT_INT8_CASES)
CASES.update(INT8_FLOAT_CASES)
GROUPS = {"engine": ["sgemm", "sgemm-mlp", "conv", "cnn", "denormal", "denormal-off"], "models": list(MODEL_CASES),
          "students": list(STUDENT_CASES), "ort": list(ORT_CASES), "ort-int8": list(ORT_INT8_CASES),
          "int8-float": list(INT8_FLOAT_CASES)}


def cpu_header():
    """The CPU model and widest vector ISA, from /proc/cpuinfo."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if "avx512f" in flags:
        extras = [name for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16"), ("avx512_fp16", "FP16"), ("amx_tile", "AMX")) if flag in flags]
        isa = "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    elif "avx2" in flags:
        isa = "AVX2" + (" + FMA" if "fma" in flags else "")
    elif "avx" in flags:
        isa = "AVX"
    else:
        isa = "SSE (no AVX)"
    return model, isa


def run_json(command, env=None):
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def distill_times(case, iterations, threads, rss=False):
    _, name, batch, _, _ = CASES[case]
    extra = ["--no-flush-denormals"] if case == "denormal-off" else []
    extra += ["--rss"] if rss else []
    return run_json([BENCH, "--case", name, "--iterations", str(iterations), "--threads", str(threads), "--batch", str(batch)] + extra)


PEER_ENV = None  # the peers' environment: os.environ, or with OMP_WAIT_POLICY=PASSIVE (--passive-peer-threads)


def torch_times(case, iterations, threads, rss=False):
    """The PyTorch peer, in a fresh process."""
    _, _, batch, name, _ = CASES[case]
    extra = ["--no-flush-denormals"] if case == "denormal-off" else []
    extra += ["--rss"] if rss else []
    return run_json([sys.executable, os.path.join(HERE, "torch_peer.py"), "--case", name, "--iterations", str(iterations),
                     "--threads", str(threads), "--batch", str(batch)] + extra, env=PEER_ENV)


_EXPORTED = {}


def ort_times(case, iterations, threads, rss=False):
    """The onnxruntime peer, in a fresh process, on the model DistillBench exported (an
    int8-infer-* case's in QDQ form; the peer's case name gives the input shape)."""
    _, name, batch, peer, _ = CASES[case]
    model_case = name.rsplit("-b", 1)[0]
    if model_case not in _EXPORTED:
        path = os.path.join(tempfile.mkdtemp(prefix="distill-bench-onnx-"), model_case + ".onnx")
        subprocess.run([BENCH, "--case", model_case, "--export-onnx", path], check=True)
        _EXPORTED[model_case] = path
    extra = ["--rss"] if rss else []
    return run_json([sys.executable, os.path.join(HERE, "ort_peer.py"), "--model", _EXPORTED[model_case], "--case", peer,
                     "--iterations", str(iterations), "--threads", str(threads), "--batch", str(batch)] + extra, env=PEER_ENV)


def float_times(case, iterations, threads, rss=False):
    """Our own float32 model: DistillBench's float twin of an int8 case, in a fresh process."""
    _, _, batch, name, _ = CASES[case]
    return run_json([BENCH, "--case", name, "--iterations", str(iterations), "--threads", str(threads), "--batch", str(batch)]
                    + (["--rss"] if rss else []))


def peer_name_of(case):
    if case in INT8_FLOAT_CASES:
        return "Distill float32"
    return "onnxruntime" if case in ORT_CASES or case in ORT_INT8_CASES else "PyTorch"


def peer_times(case, iterations, threads, rss=False):
    runner = {"Distill float32": float_times, "onnxruntime": ort_times}.get(peer_name_of(case), torch_times)
    return runner(case, iterations, threads, rss)


def idle_peaks(repeats=3):
    """Peak resident memory of idle processes: DistillBench doing nothing; Python that imported
    torch (or onnxruntime and numpy) and built nothing. Medians, in bytes."""
    ours = statistics.median(distill_times_idle()["peak_rss"] for _ in range(repeats))
    torch_idle = statistics.median(run_json([sys.executable, os.path.join(HERE, "torch_peer.py"), "--case", "idle", "--rss"])["peak_rss"]
                                   for _ in range(repeats))
    probe = ("import numpy, onnxruntime, json\n"
             "print(json.dumps({'peak_rss': next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))}))")
    ort_idle = statistics.median(run_json([sys.executable, "-c", probe])["peak_rss"] for _ in range(repeats))
    return ours, torch_idle, ort_idle


def distill_times_idle():
    return run_json([BENCH, "--case", "idle"])


def spread(values):
    return f"{min(values):.2f}–{max(values):.2f}"


def mib(value):
    return f"{value / 2**20:,.0f}"


def extras(repeats, idle, scaling_repeats=9, scaling_steps=10):
    """Two-thread scaling, peak memory, epoch time against data size, steady memory."""
    print("\n## Two-thread scaling of the cnn-teacher training step (images/s at 2 threads ÷ at 1)\n")
    ours, theirs = [], []
    # Scaling is the noisiest figure on a shared machine: more repeats and steps than the rest.
    for _ in range(scaling_repeats):
        one = statistics.median(distill_times("train-cnn-teacher", scaling_steps, 1)["seconds"])
        two = statistics.median(distill_times("train-cnn-teacher", scaling_steps, 2)["seconds"])
        t1 = statistics.median(torch_times("train-cnn-teacher", scaling_steps, 1)["seconds"])
        t2 = statistics.median(torch_times("train-cnn-teacher", scaling_steps, 2)["seconds"])
        ours.append(one / two)
        theirs.append(t1 / t2)
    print("| | scaling | range |\n| --- | ---: | --- |")
    print(f"| Distill | {statistics.median(ours):.2f} | {spread(ours)} |\n| PyTorch | {statistics.median(theirs):.2f} | {spread(theirs)} |")

    print("\n## Peak resident memory, training cnn-teacher at batch 128 (20 steps, fresh process)\n")
    ours, theirs = [], []
    for _ in range(3):
        ours.append(distill_times("train-cnn-teacher", 20, 2, rss=True)["peak_rss"])
        theirs.append(torch_times("train-cnn-teacher", 20, 2, rss=True)["peak_rss"])
    a, b = statistics.median(ours), statistics.median(theirs)
    print("| | Distill | PyTorch | ratio (PyTorch ÷ Distill) |\n| --- | ---: | ---: | ---: |")
    print(f"| total peak | {mib(a)} MiB | {mib(b)} MiB | {b / a:.2f} |")
    print(f"| peak above an idle process | {mib(a - idle[0])} MiB | {mib(b - idle[1])} MiB | {(b - idle[1]) / max(a - idle[0], 1):.2f} |")

    print("\n## cnn-student epoch time against data size (Distill, batch 128)\n")
    runs = []
    for _ in range(repeats):
        runs.append(run_json([BENCH, "--case", "epoch-size"])["seconds"])
    print("| images | seconds (median) | seconds per 10,000 images |\n| ---: | ---: | ---: |")
    for size in ["10000", "30000", "60000"]:
        seconds = statistics.median(run[size] for run in runs)
        print(f"| {int(size):,} | {seconds:.2f} | {seconds / int(size) * 10000:.3f} |")

    print("\n## Resident memory over 10,000 cnn-student training steps (Distill, batch 128)\n")
    samples = run_json([BENCH, "--case", "memory-steps", "--iterations", "10000"])["resident"]
    warm = next(rss for step, rss in samples if step >= 1000)
    last = samples[-1][1]
    print("| step | resident MiB |\n| ---: | ---: |")
    for step, rss in samples:
        if step in (1, 250, 1000, 2500, 5000, 7500, 10000):
            print(f"| {step:,} | {rss / 2**20:.1f} |")
    print(f"\nGrowth from step 1,000 to 10,000: {(last - warm) / warm * 100:+.2f}% (target: within 5%).")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=None, help="timed steps per process for every case (default: each case's own)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="engine,models",
                        help=f"comma-separated cases or groups ({', '.join(GROUPS)}); default engine,models")
    parser.add_argument("--extras", action="store_true", help="also scaling, memory and epoch-size reports")
    parser.add_argument("--passive-peer-threads", action="store_true",
                        help="run the peers with OMP_WAIT_POLICY=PASSIVE: on a machine loaded by other work, OpenMP's "
                             "spinning threads make PyTorch many times slower than it is on a quiet one")
    args = parser.parse_args()
    global PEER_ENV
    if args.passive_peer_threads:
        PEER_ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if not os.path.exists(BENCH):
        sys.exit(f"{BENCH} is missing: run 'swift build -c release --product DistillBench' first")
    if args.repeats < 1 or (args.iterations is not None and args.iterations < 1) or args.threads < 1:
        sys.exit("--repeats, --iterations and --threads must be positive")
    cases = [case for item in args.cases.split(",") for case in GROUPS.get(item, [item])]
    for case in cases:
        if case not in CASES:
            sys.exit(f"unknown case {case}; known: {', '.join(list(GROUPS) + list(CASES))}")
    model, isa = cpu_header()
    versions = run_json([sys.executable, os.path.join(HERE, "torch_peer.py"), "--case", "idle"])["torch"]
    import onnxruntime  # noqa: E402 (only for its version; the peers run in their own processes)
    print(f"# CPU: {model}, {isa}, {os.cpu_count()} cores")
    print(f"# threads={args.threads}, repeats={args.repeats}, iterations={args.iterations or 'per case'}, "
          f"torch {versions}, onnxruntime {onnxruntime.__version__}")
    print("# command: python3 bench/peers/run_side_by_side.py " + " ".join(sys.argv[1:]))
    print(f"# load average at start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
          + (" (peers with OMP_WAIT_POLICY=PASSIVE)" if args.passive_peer_threads else ""))
    idle = idle_peaks()
    print(f"# idle peaks: DistillBench {mib(idle[0])} MiB, python+torch {mib(idle[1])} MiB, python+onnxruntime {mib(idle[2])} MiB\n")
    print("| case | Distill ms | peer | peer ms | ratio (peer ÷ Distill) | ratio range | steps |")
    print("| --- | ---: | --- | ---: | ---: | --- | ---: |")
    memory = []
    for case in cases:
        label, _, _, peer, default_steps = CASES[case]
        iterations = args.iterations or default_steps
        peer_name = peer_name_of(case)
        ours, theirs, ratios, our_peak, their_peak = [], [], [], [], []
        parameters = set()
        for _ in range(args.repeats):
            a = distill_times(case, iterations, args.threads, rss=True)
            ours.append(statistics.median(a["seconds"]))
            our_peak.append(a["peak_rss"])
            if peer is None:
                continue
            b = peer_times(case, iterations, args.threads, rss=True)
            theirs.append(statistics.median(b["seconds"]))
            their_peak.append(b["peak_rss"])
            ratios.append(theirs[-1] / ours[-1])
            if "parameters" in a and "parameters" in b:
                parameters.add((a["parameters"], b["parameters"]))
        for p in parameters:
            if p[0] != p[1]:
                sys.exit(f"{case}: Distill's model has {p[0]} parameters, the peer's {p[1]}: not the same model")
        if peer is None:
            print(f"| {label} | {statistics.median(ours) * 1e3:.3f} | — | — | — | — | {iterations} |", flush=True)
            continue
        print(f"| {label} | {statistics.median(ours) * 1e3:.3f} | {peer_name} | {statistics.median(theirs) * 1e3:.3f} "
              f"| {statistics.median(ratios):.2f} | {spread(ratios)} | {iterations} |", flush=True)
        memory.append((label, peer_name, statistics.median(our_peak), statistics.median(their_peak)))
        print(json.dumps({"case": case, "distill": ours, "peer": peer_name, "peer_seconds": theirs, "distill_peak": our_peak,
                          "peer_peak": their_peak, "loadavg": os.getloadavg()[0]}), file=sys.stderr, flush=True)
    if memory:
        print("\nPeak resident memory of the same processes (VmHWM, medians), total and above an idle process "
              "that loaded the library (DistillBench doing nothing; Python that imported torch, or onnxruntime):\n")
        print("| case | Distill peak MiB | above idle | peer | peer peak MiB | above idle | ratio above idle (peer ÷ Distill) |")
        print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
        for label, peer_name, a, b in memory:
            base = {"onnxruntime": idle[2], "Distill float32": idle[0]}.get(peer_name, idle[1])
            above_a, above_b = a - idle[0], b - base
            print(f"| {label} | {mib(a)} | {mib(above_a)} | {peer_name} | {mib(b)} | {mib(above_b)} | {above_b / max(above_a, 2**20):.2f} |")
    print(f"\n# load average at end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.extras:
        extras(args.repeats, idle)


if __name__ == "__main__":
    main()
