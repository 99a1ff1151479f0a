#!/usr/bin/env python3
"""Issue 18's results over three seeds: teacher, float students, and their int8 models from
post-training quantization (PTQ) and quantization-aware distillation (QAD), with accuracy,
file size and latency; a JSON of every number, a markdown table and one SVG chart
(accuracy against latency at batch 256, marker size growing with file size).

    swift build -c release --product distill
    python3 bench/quantization/results.py                      # seeds 1, 2, 3 (resumes what --work holds)
    python3 bench/quantization/results.py --seeds 1            # one seed: to time each kind of run first
    python3 bench/quantization/results.py --latency-only       # re-measure latencies of the runs in --work

On a loaded machine, the runs can go side by side in separate invocations and one last
invocation collects them: `--stage float` (float students and PTQ, while the teacher trains
in another), then `--stage runs --seeds 2` and `--stage runs --seeds 3` once the teacher is
there (never two invocations on the same run folder), then the plain command.

What runs (each a fresh `distill` process; a run folder under --work that is complete is
reused, one that was stopped is continued with `distill run --resume`):

  teacher   distill train --model cnn-teacher --epochs 5 --seed 1      (one teacher, seed 1, for every seed)
  float     distill train --model cnn-student --epochs 5 --seed S
            distill train --model resnet8 --labels-per-class 1000 --epochs 3 --seed S
  PTQ       distill quantize FLOAT --calibration 512 --out PTQ            (min–max)
  QAD       distill distill --teacher TEACHER --student M --student-weights FLOAT --quantize int8
                --epochs 1 --lr 0.005 --seed S [--labels-per-class 1000 for resnet8] --out QAD
  QAD self  the same with --teacher FLOAT: the float student as its own teacher (the issue's other
            choice; no teacher's knowledge, only the int8 grid to adapt to)

Numbers: the float and PTQ int8 accuracy, agreement, file sizes and latencies from the PTQ
folder's quantization.json (`distill quantize` measures both models with the same median of
timed calls, `ModelCost`, on all cores); the QAD int8 accuracy from the line `distill distill
--quantize int8` prints (else from `distill evaluate` of its QDQ export), its file size from
model-int8.safetensors, its latency from `distill evaluate` of that file when the binary can
read it, else the PTQ int8 model's of the same seed (the same layers and shapes through the
same kernels); the teacher's accuracy and latency from `distill evaluate TEACHER --json
--threads T` (T: the threads `distill quantize` used), its size from model.safetensors.
Latencies measured while other work runs are noisy: the load average (1, 5, 15 minutes) is
kept beside each measurement, and --latency-only measures them all again from the runs in
--work (it re-runs `distill quantize`, whose int8 model and accuracies are deterministic, and
`distill evaluate` of the teacher) and writes the outputs again.

Outputs: --json (every number, per seed, with the commands, each step's wall time, the CPU
and load averages), --markdown (the tables), --svg (the chart). Standard library only.
"""
import argparse
import datetime
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

STUDENTS = ["cnn-student", "resnet8"]
KINDS = ["float", "ptq", "qad", "qad-self"]
KIND_LABELS = {"float": "float", "ptq": "int8, post-training", "qad": "int8, quantization-aware distillation from cnn-teacher",
               "qad-self": "int8, quantization-aware distillation, the float student as teacher"}
QAD_KINDS = ["qad", "qad-self"]


# ---------------------------------------------------------------- machine and process helpers

def load_average():
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def cpu_description():
    """Model name, family/model numbers and the vector ISA flags that matter for int8."""
    info = {"model_name": "unknown", "family": None, "model": None, "flags": [], "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name" and info["model_name"] == "unknown":
                    info["model_name"] = value
                elif key == "cpu family" and info["family"] is None:
                    info["family"] = int(value)
                elif key == "model" and info["model"] is None:
                    info["model"] = int(value)
                elif key == "flags" and not info["flags"]:
                    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"]
                    present = set(value.split())
                    info["flags"] = [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return info


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_atomically(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def shell_words(command):
    return " ".join(word if re.fullmatch(r"[\w@%+=:,./-]+", word) else "'" + word.replace("'", "'\\''") + "'" for word in command)


class Runner:
    """Runs `distill` steps, logging each one's output under WORK/logs and its wall time,
    command and load averages in WORK/steps.json (kept across reruns)."""

    def __init__(self, distill, work):
        self.distill, self.work = distill, work
        self.logs = os.path.join(work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.steps_path = os.path.join(work, "steps.json")
        self.steps = json.load(open(self.steps_path)) if os.path.exists(self.steps_path) else {}

    def log_path(self, name):
        return os.path.join(self.logs, name + ".log")

    def run(self, name, arguments, allowed_failure=False):
        """Runs `distill ARGUMENTS`, appending its output to the step's log; returns (exit
        status, output). Exits the script when it fails and `allowed_failure` is false."""
        command = [self.distill] + arguments
        before = load_average()
        print(f"[{datetime.datetime.now(datetime.timezone.utc):%H:%M:%S}] {name}: {shell_words(['distill'] + arguments)}", flush=True)
        start = time.perf_counter()
        process = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        output = process.stdout + process.stderr
        with open(self.log_path(name), "a") as f:
            f.write(f"$ {shell_words(['distill'] + arguments)}\n{output}\n[exit {process.returncode}, {seconds:.1f} s]\n")
        if process.returncode != 0 and not allowed_failure:
            sys.exit(f"Error: step {name} failed (exit {process.returncode}); its output is in {self.log_path(name)}:\n{output[-2000:]}")
        if process.returncode == 0:
            if os.path.exists(self.steps_path):  # another invocation may have added steps meanwhile
                self.steps = {**json.load(open(self.steps_path)), **{k: v for k, v in self.steps.items() if k == name}}
            record = self.steps.setdefault(name, {"runs": []})
            record["runs"].append({"command": shell_words(["distill"] + arguments), "seconds": round(seconds, 1),
                                   "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                   "load_average_before": before, "load_average_after": load_average()})
            write_atomically(self.steps_path, json.dumps(self.steps, indent=1, ensure_ascii=False) + "\n")
            print(f"    {seconds:.1f} s", flush=True)
        return process.returncode, output

    def train_like(self, name, folder, done_file, arguments):
        """A `distill train` or `distill distill` run into `folder`: skipped when `done_file`
        is there, continued from its checkpoint when it was stopped, else started afresh."""
        if os.path.exists(os.path.join(folder, done_file)):
            return None
        if os.path.exists(os.path.join(folder, "config.yaml")) and os.path.exists(os.path.join(folder, "checkpoint.safetensors")):
            return self.run(name, ["run", "--resume", folder])[1]
        if os.path.exists(folder):
            shutil.rmtree(folder)
        return self.run(name, arguments + ["--out", folder])[1]


# ---------------------------------------------------------------- the runs

class Plan:
    def __init__(self, args):
        self.args = args
        self.epochs = {"cnn-student": args.cnn_student_epochs, "resnet8": args.resnet8_epochs}
        self.extra = {"cnn-student": [], "resnet8": ["--labels-per-class", str(args.resnet8_labels_per_class)]}

    def teacher_folder(self):
        return os.path.join(self.args.work, f"teacher-cnn-teacher-e{self.args.teacher_epochs}-s1")

    def folder(self, student, kind, seed):
        base = f"{student}-e{self.epochs[student]}"
        if student == "resnet8":
            base += f"-l{self.args.resnet8_labels_per_class}"
        base += f"-s{seed}"
        if kind == "ptq":
            return os.path.join(self.args.work, base + "-ptq512")
        if kind == "qad":
            return os.path.join(self.args.work, base + f"-qad-e{self.args.qad_epochs}-t{self.args.teacher_epochs}")
        if kind == "qad-self":
            return os.path.join(self.args.work, base + f"-qad-self-e{self.args.qad_epochs}")
        return os.path.join(self.args.work, base)

    def train_teacher(self, runner):
        runner.train_like("teacher", self.teacher_folder(), "evaluation.json",
                          ["train", "--model", "cnn-teacher", "--epochs", str(self.args.teacher_epochs), "--seed", "1"])

    def train_float(self, runner, student, seed):
        runner.train_like(f"{student}-s{seed}-float", self.folder(student, "float", seed), "evaluation.json",
                          ["train", "--model", student] + self.extra[student] + ["--epochs", str(self.epochs[student]), "--seed", str(seed)])

    def quantize(self, runner, student, seed, again=False):
        out = self.folder(student, "ptq", seed)
        if again or not os.path.exists(os.path.join(out, "quantization.json")):
            runner.run(f"{student}-s{seed}-ptq", ["quantize", self.folder(student, "float", seed), "--calibration", "512", "--out", out])

    def distill_int8(self, runner, student, seed, kind):
        """QAD from cnn-teacher ("qad") or from the float student itself ("qad-self": the issue's other choice)."""
        teacher = self.teacher_folder() if kind == "qad" else self.folder(student, "float", seed)
        cache = os.path.join(self.args.work, "cache" if kind == "qad" else f"cache-{student}-s{seed}")
        runner.train_like(f"{student}-s{seed}-{kind}", self.folder(student, kind, seed), "model-int8.safetensors",
                          ["distill", "--teacher", teacher, "--student", student, "--student-weights", self.folder(student, "float", seed),
                           "--quantize", "int8"] + self.extra[student]
                          + ["--epochs", str(self.args.qad_epochs), "--lr", "0.005", "--seed", str(seed), "--cache-directory", cache])

    def commands(self):
        """The command lines, for the report (paths relative to --work)."""
        seed = "S"
        t = "teacher"
        lines = [f"distill train --model cnn-teacher --epochs {self.args.teacher_epochs} --seed 1 --out {t}"]
        for student in STUDENTS:
            extra = " ".join(self.extra[student])
            extra = f" {extra}" if extra else ""
            lines += [f"distill train --model {student}{extra} --epochs {self.epochs[student]} --seed {seed} --out {student}-{seed}",
                      f"distill quantize {student}-{seed} --calibration 512 --out {student}-{seed}-ptq",
                      f"distill distill --teacher {t} --student {student} --student-weights {student}-{seed} --quantize int8{extra} "
                      f"--epochs {self.args.qad_epochs} --lr 0.005 --seed {seed} --out {student}-{seed}-qad",
                      f"distill distill --teacher {student}-{seed} --student {student} --student-weights {student}-{seed} --quantize int8{extra} "
                      f"--epochs {self.args.qad_epochs} --lr 0.005 --seed {seed} --out {student}-{seed}-qad-self"]
        return lines


def evaluate_json(runner, name, model, threads, again=False):
    """`distill evaluate MODEL --json --threads T`'s report, or None when it cannot read MODEL;
    kept under WORK/logs and reused unless `again` (its latencies are measured once per
    --latency-only, like the quantized models')."""
    kept = os.path.join(runner.logs, name + ".json")
    if os.path.exists(kept) and not again:
        return json.load(open(kept))
    status, output = runner.run(name, ["evaluate", model, "--json", "--threads", str(threads)], allowed_failure=True)
    if status != 0:
        return None
    try:
        report = json.loads(output[output.find("{"):output.rfind("}") + 1])
    except json.JSONDecodeError:
        return None
    write_atomically(kept, json.dumps(report) + "\n")
    return report


def qad_int8_accuracy(runner, plan, student, seed, kind):
    """The int8 test accuracy the QAD run printed (the last such line in its log), else that of
    its QDQ export through `distill evaluate`; and where it came from."""
    pattern = re.compile(r"int8 test accuracy ([0-9.]+)% \(the fake-quantized student ([0-9.]+)%, same class for ([0-9.]+)%\)")
    log = runner.log_path(f"{student}-s{seed}-{kind}")
    if os.path.exists(log):
        found = pattern.findall(open(log).read())
        if found:
            int8, fake, same = (float(v) / 100 for v in found[-1])
            return {"accuracy": int8, "fake_quantized_accuracy": fake, "same_class_as_fake_quantized": same,
                    "accuracy_source": "printed by distill distill --quantize int8"}
    folder = plan.folder(student, kind, seed)
    onnx = os.path.join(folder, "model-int8.onnx")
    runner.run(f"{student}-s{seed}-{kind}-export", ["export", os.path.join(folder, "model-int8.safetensors"), "--out", onnx])
    report = evaluate_json(runner, f"{student}-s{seed}-{kind}-evaluate-onnx", onnx, 1)
    if report is None:
        sys.exit(f"Error: could not evaluate {onnx}")
    return {"accuracy": report["student"]["top1"], "accuracy_source": "distill evaluate of the QDQ export"}


def collect(runner, plan, seeds, threads_hint, again):
    """Every number: the teacher's, then per student and seed the float, PTQ and QAD models'."""
    threads = threads_hint
    students = {}
    for student in STUDENTS:
        per_seed = {}
        for seed in seeds:
            q = json.load(open(os.path.join(plan.folder(student, "ptq", seed), "quantization.json")))
            threads = q["threads"]
            ptq_steps = runner.steps.get(f"{student}-s{seed}-ptq", {}).get("runs", [])
            load = ptq_steps[-1]["load_average_before"] if ptq_steps else None
            record = {
                "float": {"accuracy": q["floatAccuracy"], "file_bytes": q["floatFileBytes"],
                          "latency_batch1_ms": q["floatLatencyBatch1Milliseconds"], "latency_batch256_ms": q["floatLatencyBatch256Milliseconds"],
                          "latency_load_average": load},
                "ptq": {"accuracy": q["int8Accuracy"], "agreement_with_float": q["agreement"], "file_bytes": q["int8FileBytes"],
                        "latency_batch1_ms": q["int8LatencyBatch1Milliseconds"], "latency_batch256_ms": q["int8LatencyBatch256Milliseconds"],
                        "latency_load_average": load, "kernel_path": q["kernelPath"], "threads": q["threads"], "float_layers": q.get("floatLayers", [])},
            }
            for kind in QAD_KINDS:
                record[kind] = qad_record(runner, plan, student, seed, kind, threads, again, record["ptq"], load)
            per_seed[str(seed)] = record
        students[student] = per_seed
    return finish_collect(runner, plan, students, threads, again)


def qad_record(runner, plan, student, seed, kind, threads, again, ptq, load):
    """A QAD run's int8 accuracy, file size and latency (its own through distill evaluate, else
    the post-training model's of the same seed)."""
    folder = plan.folder(student, kind, seed)
    qad = qad_int8_accuracy(runner, plan, student, seed, kind)
    qad["file_bytes"] = os.path.getsize(os.path.join(folder, "model-int8.safetensors"))
    name = f"{student}-s{seed}-{kind}-latency"
    report = evaluate_json(runner, name, os.path.join(folder, "model-int8.safetensors"), threads, again)
    if report is not None:
        qad.update({"latency_batch1_ms": report["studentCost"]["latencyBatch1Milliseconds"],
                    "latency_batch256_ms": report["studentCost"]["latencyBatch256Milliseconds"],
                    "latency_source": "distill evaluate of model-int8.safetensors",
                    "latency_load_average": runner.steps[name]["runs"][-1]["load_average_before"]})
    else:
        qad.update({"latency_batch1_ms": ptq["latency_batch1_ms"], "latency_batch256_ms": ptq["latency_batch256_ms"],
                    "latency_source": "the post-training int8 model's of the same seed (same layers, shapes and kernels)",
                    "latency_load_average": load})
    return qad


def finish_collect(runner, plan, students, threads, again):
    """The teacher's numbers, then everything collect() gathered."""
    teacher_folder = plan.teacher_folder()
    report = evaluate_json(runner, "teacher-evaluate", teacher_folder, threads, again)
    if report is None:
        sys.exit(f"Error: distill evaluate {teacher_folder} failed; see {runner.log_path('teacher-evaluate')}")
    teacher = {"model": "cnn-teacher", "epochs": plan.args.teacher_epochs, "seed": 1, "accuracy": report["student"]["top1"],
               "file_bytes": os.path.getsize(os.path.join(teacher_folder, "model.safetensors")),
               "latency_batch1_ms": report["studentCost"]["latencyBatch1Milliseconds"],
               "latency_batch256_ms": report["studentCost"]["latencyBatch256Milliseconds"],
               "latency_load_average": runner.steps["teacher-evaluate"]["runs"][-1]["load_average_before"], "threads": threads}
    return teacher, students, threads


# ---------------------------------------------------------------- summaries

def summary(values):
    mean = statistics.fmean(values)
    return {"mean": mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values), "values": values}


def summarize(students):
    out = {}
    for student, per_seed in students.items():
        seeds = sorted(per_seed, key=int)
        out[student] = {}
        for kind in KINDS:
            fields = {}
            for key in ("accuracy", "file_bytes", "latency_batch1_ms", "latency_batch256_ms"):
                fields[key] = summary([per_seed[s][kind][key] for s in seeds])
            if kind != "float":
                fields["accuracy_change_from_float"] = summary([per_seed[s][kind]["accuracy"] - per_seed[s]["float"]["accuracy"] for s in seeds])
                fields["file_fraction_of_float"] = summary([per_seed[s][kind]["file_bytes"] / per_seed[s]["float"]["file_bytes"] for s in seeds])
                fields["speedup_batch256"] = summary([per_seed[s]["float"]["latency_batch256_ms"] / per_seed[s][kind]["latency_batch256_ms"] for s in seeds])
            out[student][kind] = fields
    return out


def targets(summaries):
    """The issue's targets, judged on every seed: PTQ at most 1.0 point below float, QAD at
    most 0.3, each int8 file at most 30% of the float one."""
    result = {}
    for student, kinds in summaries.items():
        worst_ptq = -min(kinds["ptq"]["accuracy_change_from_float"]["values"]) * 100
        largest = max(kinds[k]["file_fraction_of_float"]["max"] for k in ["ptq"] + QAD_KINDS)
        result[student] = {
            "ptq_largest_drop_points": worst_ptq, "ptq_within_1_point": worst_ptq <= 1.0,
            "largest_int8_file_fraction": largest, "int8_file_at_most_30_percent": largest <= 0.30,
        }
        for kind in QAD_KINDS:
            worst = -min(kinds[kind]["accuracy_change_from_float"]["values"]) * 100
            prefix = kind.replace("-", "_")
            result[student][f"{prefix}_largest_drop_points"] = worst
            result[student][f"{prefix}_within_0.3_point"] = worst <= 0.3
    return result


def percent(value):
    return f"{value * 100:.2f}"


def markdown(data):
    seeds = data["seeds"]
    s = data["summaries"]
    teacher = data["teacher"]
    seed_list = ", ".join(str(x) for x in seeds)
    lines = [f"| Fashion-MNIST test (10,000 images) | accuracy %, mean ± std (seeds {seed_list}) | change from float, points (per seed) | file bytes (of float) | latency batch 1, ms | latency batch 256, ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines.append(f"| teacher: cnn-teacher ({teacher['epochs']} epochs, seed 1) | {percent(teacher['accuracy'])} | | {teacher['file_bytes']:,} | "
                 f"{teacher['latency_batch1_ms']:.3f} | {teacher['latency_batch256_ms']:.1f} |")

    def spread(field, digits, scale=1.0):
        if field["min"] == field["max"]:
            return f"{field['mean'] * scale:.{digits}f}"
        return f"{field['mean'] * scale:.{digits}f} ({field['min'] * scale:.{digits}f}–{field['max'] * scale:.{digits}f})"

    for student in STUDENTS:
        if student not in s:
            continue
        epochs = data["settings"]["epochs"][student]
        for kind in KINDS:
            f = s[student][kind]
            acc = f["accuracy"]
            cell = f"{acc['mean'] * 100:.2f} ± {acc['std'] * 100:.2f} ({', '.join(percent(v) for v in acc['values'])})"
            if kind == "float":
                name = f"{student}, float ({epochs} epochs{', 1,000 labels a class' if student == 'resnet8' else ''})"
                change, size = "", f"{round(f['file_bytes']['mean']):,}"
            else:
                name = f"{student}, {KIND_LABELS[kind]}"
                c = f["accuracy_change_from_float"]
                change = f"{c['mean'] * 100:+.2f} ({', '.join(f'{v * 100:+.2f}' for v in c['values'])})"
                size = f"{round(f['file_bytes']['mean']):,} ({f['file_fraction_of_float']['mean'] * 100:.1f}%)"
            lines.append(f"| {name} | {cell} | {change} | {size} | {spread(f['latency_batch1_ms'], 3)} | {spread(f['latency_batch256_ms'], 1)} |")
    lines.append("")
    lines.append("| target (every seed) | " + " | ".join(STUDENTS) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in STUDENTS) + " |")
    t = data["targets"]

    def verdict(ok, text):
        return f"{'met' if ok else '**missed**'}: {text}"

    lines.append("| post-training int8 within 1.0 point of float | " + " | ".join(
        verdict(t[m]["ptq_within_1_point"], f"worst seed {-t[m]['ptq_largest_drop_points']:+.2f}") for m in STUDENTS) + " |")
    for kind, who in (("qad", "from cnn-teacher"), ("qad_self", "the float student as teacher")):
        lines.append(f"| quantization-aware distillation ({who}) within 0.3 point | " + " | ".join(
            verdict(t[m][f"{kind}_within_0.3_point"], f"worst seed {-t[m][f'{kind}_largest_drop_points']:+.2f}") for m in STUDENTS) + " |")
    lines.append("| int8 file at most 30% of float | " + " | ".join(
        verdict(t[m]["int8_file_at_most_30_percent"], f"largest {t[m]['largest_int8_file_fraction'] * 100:.1f}%") for m in STUDENTS) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the chart

COLORS = {"cnn-teacher": "#444444", "cnn-student": "#1f6fb4", "resnet8": "#d9661f"}


def marker(kind, x, y, r, color):
    style = f'fill="{color}" fill-opacity="0.35" stroke="{color}" stroke-width="1.5"'
    if kind == "float":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {style}/>'
    if kind == "ptq":
        a = r * 0.886  # the same area as the circle
        return f'<rect x="{x - a:.1f}" y="{y - a:.1f}" width="{2 * a:.1f}" height="{2 * a:.1f}" {style}/>'
    if kind in QAD_KINDS:
        a = r * 2.693  # the side of an equilateral triangle of the circle's area (self: pointing down)
        h = a * math.sqrt(3) / 2 * (1 if kind == "qad" else -1)
        return f'<polygon points="{x:.1f},{y - 2 * h / 3:.1f} {x - a / 2:.1f},{y + h / 3:.1f} {x + a / 2:.1f},{y + h / 3:.1f}" {style}/>'
    a = r * 1.253  # teacher: a diamond of the circle's area
    return f'<polygon points="{x:.1f},{y - a:.1f} {x + a:.1f},{y:.1f} {x:.1f},{y + a:.1f} {x - a:.1f},{y:.1f}" {style}/>'


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(data):
    """Accuracy against latency at batch 256 (log scale), markers of radius 3 + 15·√(bytes ÷ the
    largest file's): means over the seeds, bars spanning the seeds' range."""
    points = []  # (label, model, kind, latency summary, accuracy summary, bytes)
    t = data["teacher"]
    one = lambda v: {"mean": v, "min": v, "max": v}  # noqa: E731
    points.append((f"cnn-teacher, float ({t['epochs']} epochs)", "cnn-teacher", "teacher", one(t["latency_batch256_ms"]), one(t["accuracy"]), t["file_bytes"]))
    for student in STUDENTS:
        for kind in KINDS:
            f = data["summaries"][student][kind]
            label = f"{student}, " + {"float": "float", "ptq": "int8 PTQ", "qad": "int8 QAD", "qad-self": "int8 QAD (self)"}[kind]
            points.append((label, student, kind, f["latency_batch256_ms"], f["accuracy"], f["file_bytes"]["mean"]))

    width, height = 900, 510
    left, right, top, bottom = 70, 560, 50, 430  # the plot's box; the legend sits right of it
    lat_lo = min(p[3]["min"] for p in points) / 1.5
    lat_hi = max(p[3]["max"] for p in points) * 1.5
    acc_lo = math.floor(min(p[4]["min"] for p in points) * 100 - 0.5)
    acc_hi = math.ceil(max(p[4]["max"] for p in points) * 100 + 0.5)

    def px(latency):
        return left + (math.log10(latency) - math.log10(lat_lo)) / (math.log10(lat_hi) - math.log10(lat_lo)) * (right - left)

    def py(accuracy):
        return bottom - (accuracy * 100 - acc_lo) / (acc_hi - acc_lo) * (bottom - top)

    largest = max(p[5] for p in points)

    def radius(size):
        return 3 + 15 * math.sqrt(size / largest)

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="24" font-size="15" font-weight="bold">Teacher, float students and int8 students on Fashion-MNIST</text>',
           f'<text x="{left}" y="40" fill="#555">accuracy against latency at batch 256 ({data["threads"]} threads); marker size grows with file size; '
           f'students: mean of seeds {", ".join(str(s) for s in data["seeds"])}, bars: range</text>',
           f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" stroke="#999"/>']
    # Axes: decades and 2, 5 between them on x, whole points on y.
    decade = 10 ** math.floor(math.log10(lat_lo))
    while decade < lat_hi:
        for m in (1, 2, 3, 5):
            v = decade * m
            if lat_lo <= v <= lat_hi:
                x = px(v)
                svg.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e5e5e5"/>')
                svg.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{v:g}</text>')
        decade *= 10
    step = 1 if acc_hi - acc_lo <= 12 else 2
    for a in range(acc_lo, acc_hi + 1, step):
        y = py(a / 100)
        svg.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        svg.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{a}</text>')
    svg.append(f'<text x="{(left + right) / 2}" y="{bottom + 40}" text-anchor="middle">latency at batch 256, ms (log scale)</text>')
    svg.append(f'<text transform="translate(22 {(top + bottom) / 2}) rotate(-90)" text-anchor="middle">test accuracy, % (10,000 images)</text>')
    # Range bars, then markers, largest first so small ones stay visible on top.
    for label, model, kind, lat, acc, size in points:
        color = COLORS[model]
        x, y = px(lat["mean"]), py(acc["mean"])
        if lat["min"] != lat["max"]:
            svg.append(f'<line x1="{px(lat["min"]):.1f}" y1="{y:.1f}" x2="{px(lat["max"]):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1"/>')
        if acc["min"] != acc["max"]:
            svg.append(f'<line x1="{x:.1f}" y1="{py(acc["min"]):.1f}" x2="{x:.1f}" y2="{py(acc["max"]):.1f}" stroke="{color}" stroke-width="1"/>')
    for label, model, kind, lat, acc, size in sorted(points, key=lambda p: -p[5]):
        svg.append(marker(kind, px(lat["mean"]), py(acc["mean"]), radius(size), COLORS[model]))
    # A name beside each model's group of markers.
    for model in ["cnn-teacher"] + STUDENTS:
        group = [p for p in points if p[1] == model]
        x = max(px(p[3]["mean"]) + radius(p[5]) for p in group) + 6
        anchor = "start"
        if x + 8 * len(model) > right:  # no room on the right: the name goes on the left
            x, anchor = min(px(p[3]["mean"]) - radius(p[5]) for p in group) - 6, "end"
        y = min(py(p[4]["max"]) for p in group)
        svg.append(f'<text x="{x:.1f}" y="{y - 6:.1f}" text-anchor="{anchor}" fill="{COLORS[model]}" font-weight="bold">{model}</text>')
    # Legend: every marker with its numbers.
    lx, ly = right + 20, top + 6
    svg.append(f'<text x="{lx}" y="{ly}" font-weight="bold">accuracy, file size, latency at batch 256</text>')
    for label, model, kind, lat, acc, size in points:
        ly += 34
        svg.append(marker(kind, lx + 12, ly - 4, radius(size) * 0.7 if radius(size) > 10 else radius(size), COLORS[model]))
        svg.append(f'<text x="{lx + 32}" y="{ly - 6}">{escape(label)}</text>')
        svg.append(f'<text x="{lx + 32}" y="{ly + 9}" fill="#555">{acc["mean"] * 100:.2f}%, {size / 1000:,.1f} kB, {lat["mean"]:.1f} ms</text>')
    cpu = data["cpu"]
    svg.append(f'<text x="{left}" y="{height - 24}" fill="#777" font-size="11">{escape(cpu["model_name"])} (family {cpu["family"]} model {cpu["model"]}; '
               f'{", ".join(cpu["flags"])}), {data["threads"]} threads</text>')
    svg.append(f'<text x="{left}" y="{height - 10}" fill="#777" font-size="11">{escape(data["latency_measured"])}, load average '
               f'{data["latency_load_average_range"]}; written by bench/quantization/results.py (binary built at commit {data["commit"]})</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--distill", default=os.path.join(ROOT, ".build", "release", "distill"))
    parser.add_argument("--work", default=os.path.join(ROOT, "runs", "q8-results"), help="run folders, logs and the teacher cache (reused by reruns)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--cnn-student-epochs", type=int, default=5)
    parser.add_argument("--resnet8-epochs", type=int, default=3)
    parser.add_argument("--resnet8-labels-per-class", type=int, default=1000)
    parser.add_argument("--qad-epochs", type=int, default=1)
    parser.add_argument("--latency-only", action="store_true", help="train nothing: measure the latencies of the runs in --work again")
    parser.add_argument("--stage", choices=["all", "float", "runs"], default="all",
                        help="float: only the float students and their post-training int8 models (no teacher); runs: every run, no "
                             "outputs written (for invocations side by side on different --seeds, then one that collects)")
    parser.add_argument("--json", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--markdown", default=os.path.join(HERE, "results.md"))
    parser.add_argument("--svg", default=os.path.join(ROOT, "docs", "quantization-chart.svg"))
    args = parser.parse_args()
    if not os.path.exists(args.distill):
        sys.exit(f"Error: no distill binary at {args.distill} (swift build -c release --product distill, or --distill PATH)")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        sys.exit(f"Error: --seeds {args.seeds}: expected numbers separated by commas")
    args.work = os.path.abspath(args.work)
    runner = Runner(args.distill, args.work)
    plan = Plan(args)
    started = time.perf_counter()
    load_start = load_average()
    print(f"load average {load_start}; work folder {args.work}", flush=True)

    if args.latency_only:
        for student in STUDENTS:
            for seed in seeds:
                plan.quantize(runner, student, seed, again=True)
    else:
        if args.stage != "float":
            plan.train_teacher(runner)
        for seed in seeds:
            for student in STUDENTS:
                plan.train_float(runner, student, seed)
                plan.quantize(runner, student, seed)
                if args.stage != "float":
                    for kind in QAD_KINDS:
                        plan.distill_int8(runner, student, seed, kind)
        if args.stage != "all":
            print(f"stage {args.stage} done ({time.perf_counter() - started:.0f} s)")
            return

    teacher, students, threads = collect(runner, plan, seeds, os.cpu_count(), args.latency_only)
    summaries = summarize(students)
    loads = [teacher["latency_load_average"]] + [students[m][str(s)][k]["latency_load_average"] for m in STUDENTS for s in seeds for k in KINDS]
    ones = [l[0] for l in loads if l]
    measured_at = [run["finished"] for name, step in runner.steps.items() if name.endswith(("-ptq", "-latency", "teacher-evaluate"))
                   for run in step.get("runs", [])[-1:]]
    data = {
        "issue": 18,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": "python3 bench/quantization/results.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_description(),
        "threads": threads,
        "load_average_start": load_start, "load_average_end": load_average(),
        "latency_load_average_range": f"{min(ones):.1f}–{max(ones):.1f} (1 minute)" if ones else "unknown",
        "latency_measured": (f"latencies measured {min(measured_at)[:16].replace('T', ' ')}–{max(measured_at)[11:16]} UTC" if measured_at else ""),
        "seeds": seeds,
        "settings": {"epochs": plan.epochs, "teacher_epochs": args.teacher_epochs, "resnet8_labels_per_class": args.resnet8_labels_per_class,
                     "qad_epochs": args.qad_epochs, "qad_lr": 0.005, "calibration": "min–max, 512 training images"},
        "commands": plan.commands(),
        "teacher": teacher,
        "students": students,
        "summaries": summaries,
        "targets": targets(summaries),
        "steps": runner.steps,
        "wall_seconds_this_invocation": round(time.perf_counter() - started, 1),
    }
    write_atomically(args.json, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    table = markdown(data)
    write_atomically(args.markdown, table)
    write_atomically(args.svg, chart(data))
    print(table)
    print(f"wrote {args.json}, {args.markdown}, {args.svg} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
