#!/usr/bin/env python3
"""Served teachers (docs/served-teachers.md): how fast `distill distill` queries Seldon
MLServer beside a plain sequential Python `requests` client, and what failures cost.

    swift build -c release --product distill
    scripts/install-deps.sh --test-oracles      # MLServer's virtual environment
    python3 bench/peers/served_teacher_bench.py throughput [--examples 2000] [--repeats 3]
    python3 bench/peers/served_teacher_bench.py faults [--repeats 3]
    python3 bench/peers/served_teacher_bench.py restart [--repeats 3]

throughput: a cnn-teacher trained by `distill train` on the first --examples Fashion-MNIST
training images (an NPZ made from Debian's dataset-fashion-mnist) and exported to ONNX is
served by MLServer (scripts/mlserver_onnx_runtime.py; MLServer's default settings but for
host, ports, metrics off, and inference in the server's process: 1.7.1's parallel inference
workers die here at start with "There is no current event loop"). Distill's rate is --examples divided by the time of a `distill
distill` run that asks for every example less the time of the same run with every answer
kept (so it counts converting, JSON, hashing and the fsync per batch, not training). The
Python client sends the same batches, one request at a time, over one keep-alive session.

faults: scripts/oip_test_server.py (600 examples of 16 features) with --fault-rate 0 and
0.1 (503 without Retry-After, seeded by the repeat): the querying time and the requests
made. restart: a run killed by SIGKILL halfway through querying and restarted: what each asked.

Each figure is the median of --repeats runs.
"""
import argparse
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DISTILL = os.path.join(ROOT, ".build", "release", "distill")
SCRIPTS = os.path.join(ROOT, "scripts")
FASHION = "/usr/share/datasets/fashion-mnist"
VENV = os.environ.get("DISTILL_MLSERVER_VENV") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "distill", "mlserver-1.7.1")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for(url, seconds=120):
    for _ in range(int(seconds * 10)):
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def timed(arguments, expect=None):
    start = time.perf_counter()
    result = subprocess.run(arguments, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or (expect and expect not in result.stdout):
        raise SystemExit(f"{' '.join(arguments)}\n{result.stdout}\n{result.stderr}")
    return elapsed


def querying_time(arguments, work, examples):
    """Seconds a run spends asking for every example: a run with an empty cache less one with every answer kept."""
    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    fresh = timed(arguments + ["--cache-directory", cache, "--out", os.path.join(work, "run-fresh")], f"{examples} asked now")
    kept = timed(arguments + ["--cache-directory", cache, "--out", os.path.join(work, "run-kept")], " 0 asked now")
    return fresh - kept


def fashion_subset(work, examples):
    """train.npz (the first `examples` training images) and test.npz (the first 1,000 test images), uint8 [N, 1, 28, 28]."""
    import numpy as np

    def idx(name, offset):
        with gzip.open(os.path.join(FASHION, name)) as handle:
            return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)

    for split, prefix, count in [("train", "train", examples), ("test", "t10k", 1000)]:
        images = idx(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:count]
        labels = idx(f"{prefix}-labels-idx1-ubyte.gz", 8)[:count].astype(np.int64)
        np.savez(os.path.join(work, f"{split}.npz"), inputs=images, labels=labels)


def throughput(options):
    work = tempfile.mkdtemp(prefix="served-bench-")
    fashion_subset(work, options.examples)
    train, test = os.path.join(work, "train.npz"), os.path.join(work, "test.npz")
    timed([DISTILL, "train", "--model", "cnn-teacher", "--data", train, "--test-data", test, "--epochs", "2",
           "--out", os.path.join(work, "teacher-run")])
    with open(os.path.join(work, "teacher-run", "evaluation.json")) as handle:
        accuracy = json.load(handle)["student"]["top1"]
    model = os.path.join(work, "repository", "teacher")
    os.makedirs(model)
    timed([DISTILL, "export", os.path.join(work, "teacher-run"), "--out", os.path.join(model, "teacher.onnx")])
    with open(os.path.join(model, "model-settings.json"), "w") as handle:
        json.dump({"name": "teacher", "implementation": "mlserver_onnx_runtime.ONNXClassifier",
                   "parameters": {"uri": "./teacher.onnx", "version": "1"}}, handle)
    http, grpc = free_ports(2)
    with open(os.path.join(work, "repository", "settings.json"), "w") as handle:
        json.dump({"host": "127.0.0.1", "http_port": http, "grpc_port": grpc, "metrics_endpoint": None,
                   "parallel_workers": 0, "debug": False}, handle)
    log = open(os.path.join(work, "mlserver.log"), "w")
    server = subprocess.Popen([os.path.join(VENV, "bin", "mlserver"), "start", os.path.join(work, "repository")],
                              cwd=work, stdout=log, stderr=log, env=dict(os.environ, PYTHONPATH=SCRIPTS))
    url = f"http://127.0.0.1:{http}/v2/models/teacher"
    rows = []
    try:
        wait_for(url + "/ready")
        print(f"cnn-teacher, test accuracy {accuracy:.2%} on the subset; MLServer at {url}", flush=True)
        base = [DISTILL, "distill", "--teacher", url, "--data", train, "--test-data", test, "--validation-fraction", "0",
                "--student", "mlp", "--epochs", "1"]
        for batch in options.batches:
            python = [run_python_client(url, train, batch) for _ in range(options.repeats)]
            rows.append((batch, "Python requests", 1, statistics.median(python)))
            print(rows[-1], flush=True)
            for concurrency in options.concurrency:
                rates = [options.examples / querying_time(base + ["--query-batch", str(batch), "--concurrency", str(concurrency)], work, options.examples)
                         for _ in range(options.repeats)]
                rows.append((batch, "Distill", concurrency, statistics.median(rates)))
                print(rows[-1], flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print("\n| query batch | client | concurrency | examples/s |\n|---:|---|---:|---:|")
    for batch, client, concurrency, rate in rows:
        print(f"| {batch} | {client} | {concurrency} | {rate:,.0f} |")
    shutil.rmtree(work, ignore_errors=True)


def run_python_client(url, train, batch):
    """Examples/s of the sequential `requests` client (run in MLServer's environment, which has requests)."""
    result = subprocess.run([os.path.join(VENV, "bin", "python"), __file__, "client", "--url", url, "--data", train,
                             "--batch", str(batch)], capture_output=True, text=True, check=True)
    return float(result.stdout.strip())


def client(options):
    """A plain sequential client: normalise as Distill does, POST each batch as OIP JSON, check the answer."""
    import numpy as np
    import requests

    images = np.load(options.data)["inputs"].astype(np.float32) / 255
    inputs = ((images - images.mean()) / images.std()).astype(np.float32)
    session = requests.Session()
    start = time.perf_counter()
    for first in range(0, len(inputs), options.batch):
        chunk = inputs[first:first + options.batch]
        body = {"inputs": [{"name": "input", "shape": list(chunk.shape), "datatype": "FP32", "data": chunk.ravel().tolist()}]}
        answer = session.post(url=options.url + "/infer", json=body, timeout=30)
        answer.raise_for_status()
        output = answer.json()["outputs"][0]
        logits = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
        assert logits.shape[0] == len(chunk) and np.isfinite(logits).all()
    print(len(inputs) / (time.perf_counter() - start))


def start_test_server(work, arguments):
    port_file = os.path.join(work, f"port-{time.monotonic_ns()}")
    server = subprocess.Popen([sys.executable, os.path.join(SCRIPTS, "oip_test_server.py"), "--model", os.path.join(work, "teacher.npz"),
                               "--port-file", port_file] + arguments, stderr=subprocess.DEVNULL)
    while not os.path.exists(port_file):
        time.sleep(0.05)
    with open(port_file) as handle:
        return server, int(handle.read())


def stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        return json.load(answer)


def test_server_arguments(work, port, batch, concurrency):
    return [DISTILL, "distill", "--teacher", f"http://127.0.0.1:{port}/v2/models/teacher", "--data", os.path.join(work, "train.npz"),
            "--test-data", os.path.join(work, "test.npz"), "--validation-fraction", "0", "--student", "mlp", "--epochs", "1",
            "--teacher-mean", "0", "--teacher-std", "1", "--query-batch", str(batch), "--concurrency", str(concurrency)]


def faults(options):
    work = tempfile.mkdtemp(prefix="served-faults-")
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "oip_test_server.py"), "--make-data", work], check=True)

    print("| query batch | concurrency | failure rate | querying (s) | requests made | of which failed |\n|---:|---:|---:|---:|---:|---:|")
    for batch, concurrency in [(1, 1), (1, 4), (10, 1), (10, 4)]:
        for rate in [0.0, 0.1]:
            times, requests, failed = [], [], []
            for repeat in range(options.repeats):
                server, port = start_test_server(work, ["--fault-rate", str(rate), "--fault-seed", str(repeat)])
                try:
                    times.append(querying_time(test_server_arguments(work, port, batch, concurrency), work, 600))
                    counts = stats(port)
                    requests.append(counts["requests"])
                    failed.append(counts["failed"])
                finally:
                    server.terminate()
                    server.wait()
            print(f"| {batch} | {concurrency} | {rate:.0%} | {statistics.median(times):.2f} | {statistics.median(requests):.0f} "
                  f"| {statistics.median(failed):.0f} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


def restart(options):
    """A run killed (SIGKILL) halfway through querying (batch 10, concurrency 3, 50 ms a request), and its restart: what each asked."""
    work = tempfile.mkdtemp(prefix="served-restart-")
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "oip_test_server.py"), "--make-data", work], check=True)
    print("| killed run asked | kept at the kill | restart asked | asked twice |\n|---:|---:|---:|---:|")
    for repeat in range(options.repeats):
        server, port = start_test_server(work, ["--fault", "delay", "--delay", "0.05"])
        cache = os.path.join(work, f"cache-kill-{repeat}")
        command = test_server_arguments(work, port, 10, 3) + ["--cache-directory", cache]
        try:
            killed = subprocess.Popen(command + ["--out", os.path.join(work, "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while stats(port)["examples"] < 300:
                time.sleep(0.01)
            killed.kill()
            killed.wait()
            time.sleep(0.5)  # the requests in flight at the kill are still answered, and counted, by the server
            asked_before = stats(port)["examples"]
            result = subprocess.run(command + ["--out", os.path.join(work, "restarted")], capture_output=True, text=True, check=True)
            line = next(line for line in result.stdout.splitlines() if "asked now" in line)
            kept = int(line.split(" kept from earlier")[0].rsplit(", ", 1)[1])
            restart_asked = stats(port)["examples"] - asked_before
        finally:
            server.terminate()
            server.wait()
        print(f"| {asked_before} | {kept} | {restart_asked} | {asked_before + restart_asked - 600} |", flush=True)
    shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("throughput")
    measure.add_argument("--examples", type=int, default=2000)
    measure.add_argument("--batches", type=lambda text: [int(v) for v in text.split(",")], default=[1, 16, 64])
    measure.add_argument("--concurrency", type=lambda text: [int(v) for v in text.split(",")], default=[1, 4, 16])
    measure.add_argument("--repeats", type=int, default=3)
    fault = commands.add_parser("faults")
    fault.add_argument("--repeats", type=int, default=3)
    restarted = commands.add_parser("restart")
    restarted.add_argument("--repeats", type=int, default=3)
    sequential = commands.add_parser("client")
    sequential.add_argument("--url", required=True)
    sequential.add_argument("--data", required=True)
    sequential.add_argument("--batch", type=int, required=True)
    options = parser.parse_args()
    {"throughput": throughput, "faults": faults, "restart": restart, "client": client}[options.command](options)


if __name__ == "__main__":
    main()
