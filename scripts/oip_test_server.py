#!/usr/bin/env python3
"""A small Open Inference Protocol (KServe v2) server for Distill's tests of served teachers.

It serves a deterministic linear classifier (logits = x @ W + b, W and b from an .npz), or an
ONNX classifier through onnxruntime (--onnx), over HTTP/JSON on 127.0.0.1, counts the examples
it is asked about, and injects faults on request.

    oip_test_server.py --make-data DIR       # writes train.npz, test.npz, teacher.npz, teacher-logits.npy
    oip_test_server.py --make-image-data DIR # writes train/ and test/ PNG folders, teacher.npz, teacher-logits.npy
    oip_test_server.py --model DIR/teacher.npz --port-file PORTFILE [--fault 503 --fault-times 2] ...
    oip_test_server.py --onnx teacher.onnx --port-file PORTFILE --answers probabilities

Answers (--answers): logits (the default), probabilities (softmax of the logits), label (the
top class, INT64 [batch]) or label-name (the top class's name, BYTES [batch], from
--class-names or the index as text). Whatever the output, a request asking
`"outputs": [{"name": ..., "parameters": {"classification": K}}]` gets Triton's
classification extension: BYTES [batch, K] of "score:index:name", the K largest output values
(scores are what the output holds: probabilities only with --answers probabilities).
--binary offers Triton's binary tensor extension (GET /v2 lists "binary_tensor_data"): inputs
given as raw bytes after a JSON header of Inference-Header-Content-Length bytes are read, and
with request parameter "binary_data_output": true the output is answered as raw little-endian
FP32 bytes after the JSON header; /stats counts such requests as binary_requests.

Endpoints: GET /v2/health/ready, GET /v2/models/NAME, POST /v2/models/NAME/infer, and
GET /stats (requests and examples answered so far, for the tests' counts). With --tls-cert
and --tls-key it speaks HTTPS.
Faults (--fault, applied to the first --fault-times infer requests, or to every one after
--fault-after requests): delay, 429, 500, 503 (with Retry-After), reset, badjson, nan, shape,
version, big, stream (a body of --big-bytes sent in chunks without Content-Length), redirect
(307 to --redirect-to); and malformed partial answers: topk-index (a class index out of range),
topk-count (one entry fewer than asked), probability (a value of 1.5), label-range (a label
equal to the class count). --fault-rate P fails each infer request with 503 (no
Retry-After) with probability P, drawn from a generator seeded by --fault-seed: the client's
own back-off is what it costs (bench/peers/served_teacher_bench.py measures it).
"""
import argparse
import json
import socket
import struct
import sys
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np


def make_data(directory):
    """Four Gaussian classes in 16 features; a linear teacher fitted by least squares."""
    rng = np.random.default_rng(7)
    centres = rng.normal(0, 1.2, size=(4, 16)).astype(np.float32)

    def sample(n):
        labels = rng.integers(0, 4, size=n)
        inputs = centres[labels] + rng.normal(0, 1.0, size=(n, 16)).astype(np.float32)
        return inputs.astype(np.float32), labels.astype(np.int64)

    train_x, train_y = sample(600)
    test_x, test_y = sample(400)
    targets = np.eye(4, dtype=np.float32)[train_y] * 4 - 1
    design = np.hstack([train_x, np.ones((len(train_x), 1), np.float32)])
    solution = np.linalg.lstsq(design, targets, rcond=None)[0].astype(np.float32)
    weight, bias = solution[:16], solution[16]
    np.savez(f"{directory}/train.npz", inputs=train_x, labels=train_y)
    np.savez(f"{directory}/test.npz", inputs=test_x, labels=test_y)
    np.savez(f"{directory}/teacher.npz", weight=weight, bias=bias)
    np.save(f"{directory}/teacher-logits.npy", (train_x @ weight + bias).astype(np.float32))


def write_png(path, pixels):
    """An 8-bit grayscale PNG of `pixels` (height × width uint8), with the standard library."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width = pixels.shape
    rows = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def make_image_data(directory):
    """Folders train/ and test/ of 8×8 grayscale PNGs in three class subfolders (a bright
    quadrant per class, noise elsewhere); a linear teacher over the flattened pixels / 255,
    served with --input-shape 1,8,8; and its logits on train/ in the order Distill reads it
    (class folders by name, files by name within each)."""
    import os
    rng = np.random.default_rng(11)
    classes = ["a", "b", "c"]

    def image(label):
        pixels = rng.integers(0, 90, size=(8, 8))
        y, x = divmod(label, 2)
        pixels[y * 4:(y + 1) * 4, x * 4:(x + 1) * 4] += 150
        return np.clip(pixels, 0, 255).astype(np.uint8)

    inputs = {}
    for split, count in (("train", 40), ("test", 20)):
        rows, labels = [], []
        for label, name in enumerate(classes):
            os.makedirs(f"{directory}/{split}/{name}", exist_ok=True)
            for i in range(count):
                pixels = image(label)
                write_png(f"{directory}/{split}/{name}/{i:03d}.png", pixels)
                rows.append(pixels.reshape(-1).astype(np.float32) / 255)
                labels.append(label)
        inputs[split] = (np.stack(rows), np.array(labels))
    train_x, train_y = inputs["train"]
    targets = np.eye(3, dtype=np.float32)[train_y] * 4 - 1
    design = np.hstack([train_x, np.ones((len(train_x), 1), np.float32)])
    solution = np.linalg.lstsq(design, targets, rcond=None)[0].astype(np.float32)
    weight, bias = solution[:64], solution[64]
    np.savez(f"{directory}/teacher.npz", weight=weight, bias=bias)
    np.save(f"{directory}/teacher-logits.npy", (train_x @ weight + bias).astype(np.float32))


class State:
    def __init__(self, options):
        self.options = options
        if options.onnx:
            import onnxruntime
            self.session = onnxruntime.InferenceSession(options.onnx, providers=["CPUExecutionProvider"])
            model_input, model_output = self.session.get_inputs()[0], self.session.get_outputs()[0]
            self.input_shape = [-1] + [d if isinstance(d, int) else -1 for d in model_input.shape[1:]]
            self.classes = model_output.shape[-1]
            self.input_name = model_input.name
        else:
            model = np.load(options.model)
            self.weight, self.bias = model["weight"], model["bias"]
            shape = [int(n) for n in options.input_shape.split(",")] if options.input_shape else [self.weight.shape[0]]
            self.input_shape = [-1] + shape
            self.classes = self.weight.shape[1]
        self.lock = threading.Lock()
        self.requests = 0
        self.examples = 0
        self.binary_requests = 0
        self.authorizations = []
        self.streamed = 0
        self.failed = 0
        self.random = random.Random(options.fault_seed)

    def fails_at_random(self):
        """True for a request that --fault-rate fails (called under the lock)."""
        if not self.options.fault_rate or self.random.random() >= self.options.fault_rate:
            return False
        self.failed += 1
        return True

    def logits(self, inputs):
        if self.options.onnx:
            return self.session.run(None, {self.input_name: inputs})[0].astype(np.float32)
        return inputs.reshape(len(inputs), -1) @ self.weight + self.bias

    def output_metadata(self):
        answers = self.options.answers
        if answers == "label":
            return {"name": "label", "datatype": "INT64", "shape": [-1]}
        if answers == "label-name":
            return {"name": "label", "datatype": "BYTES", "shape": [-1]}
        return {"name": "probabilities" if answers == "probabilities" else "logits", "datatype": "FP32", "shape": [-1, self.classes]}

    def class_name(self, index):
        names = self.options.class_names.split(",") if self.options.class_names else None
        return names[index] if names else str(index)

    def fault_for(self, number):
        o = self.options
        if not o.fault:
            return None
        if o.fault_after is not None:
            return o.fault if number > o.fault_after else None
        return o.fault if number <= o.fault_times else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY a kept-alive connection waits
    # for the client's delayed ACK (40 ms) on every answer, as production servers do not.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def stream(self, answer):
        """The answer padded with --big-bytes bytes, sent in chunks of 1 MiB (no
        Content-Length) and never held whole; /stats counts the bytes the client took."""
        head = json.dumps(answer)[:-1].encode() + b', "padding": "'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"x" * (1 << 20)
        parts = [head] + [block] * (self.server.state.options.big_bytes >> 20) + [b'"}']
        try:
            for part in parts:
                self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
                with self.server.state.lock:
                    self.server.state.streamed += len(part)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def authorized(self):
        token = self.server.state.options.token
        given = self.headers.get("Authorization")
        if given:
            with self.server.state.lock:
                self.server.state.authorizations.append(given)
        if token and given != f"Bearer {token}":
            self.reply(401, {"error": "unauthorized"})
            return False
        return True

    def do_GET(self):
        state, name = self.server.state, self.server.state.options.name
        if self.path == "/stats":
            with state.lock:
                return self.reply(200, {"requests": state.requests, "examples": state.examples,
                                        "authorizations": len(state.authorizations), "streamed": state.streamed,
                                        "binary_requests": state.binary_requests, "failed": state.failed})
        if not self.authorized():
            return
        if self.path == "/v2/health/ready":
            return self.reply(200, {"ready": True})
        if self.path == "/v2":
            extensions = ["classification"] + (["binary_tensor_data"] if state.options.binary else [])
            return self.reply(200, {"name": "oip_test_server", "version": "1", "extensions": extensions})
        if self.path == f"/v2/models/{name}":
            return self.reply(200, {
                "name": name, "versions": [state.options.version], "platform": "onnxruntime" if state.options.onnx else "numpy",
                "inputs": [{"name": "input", "datatype": "FP32", "shape": state.input_shape}],
                "outputs": [state.output_metadata()]})
        self.reply(404, {"error": f"no {self.path}"})

    def do_POST(self):
        state, options = self.server.state, self.server.state.options
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not self.authorized():
            return
        if self.path != f"/v2/models/{options.name}/infer":
            return self.reply(404, {"error": f"no {self.path}"})
        with state.lock:
            state.requests += 1
            number = state.requests
            failing = state.fails_at_random()
        if failing:
            return self.reply(503, {"error": "injected at random"})
        fault = state.fault_for(number)
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if fault == "redirect":
            return self.reply(307, {"error": "moved"}, [("Location", options.redirect_to + self.path)])
        if fault in ("429", "500", "503"):
            return self.reply(int(fault), {"error": "injected"}, [("Retry-After", "0")] if fault != "500" else [])
        if fault == "delay":
            time.sleep(options.delay)
        header_length = self.headers.get("Inference-Header-Content-Length")
        if header_length is not None and not options.binary:
            return self.reply(400, {"error": "binary tensor data is not offered"})
        request = json.loads(body[:int(header_length)] if header_length is not None else body)
        tensor = request["inputs"][0]
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            start = int(header_length)
            if header_length is None or start + size != len(body):
                return self.reply(400, {"error": "binary input size mismatch"})
            inputs = np.frombuffer(body[start:start + size], dtype="<f4").reshape(tensor["shape"])
        else:
            inputs = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        binary_output = bool((request.get("parameters") or {}).get("binary_data_output"))
        with state.lock:
            state.examples += len(inputs)
            if header_length is not None or binary_output:
                state.binary_requests += 1
        outputs = state.logits(inputs)
        if options.answers == "probabilities":
            shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            outputs = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        version = "2" if fault == "version" else options.version
        if fault == "badjson":
            return self.reply(200, b"{\"outputs\": [")
        if fault == "nan":
            outputs[0, 0] = np.nan
        if fault == "shape":
            outputs = outputs[:, :-1]
        if fault == "probability":
            outputs[0, 0] = 1.5
        meta = state.output_metadata()
        classification = None
        for wanted in request.get("outputs") or []:
            classification = (wanted.get("parameters") or {}).get("classification", classification)
        if classification is not None:
            k = int(classification)
            order = np.argsort(-outputs, axis=1, kind="stable")[:, :k]
            rows = [[f"{float(outputs[i, c])!r}:{int(c)}:{state.class_name(int(c))}" for c in order[i]] for i in range(len(outputs))]
            if fault == "topk-index":
                rows[0][0] = f"0.5:{state.classes}:x"
            if fault == "topk-count":
                rows = [row[:-1] for row in rows]
            output = {"name": meta["name"], "datatype": "BYTES", "shape": [len(rows), len(rows[0])], "data": [v for row in rows for v in row]}
        elif options.answers in ("label", "label-name"):
            labels = outputs.argmax(axis=1)
            if fault == "label-range":
                labels[0] = state.classes
            data = [int(v) for v in labels] if options.answers == "label" else [state.class_name(int(v)) for v in labels]
            output = {"name": meta["name"], "datatype": meta["datatype"], "shape": [len(labels)], "data": data}
        else:
            output = {"name": meta["name"], "datatype": "FP32", "shape": list(outputs.shape)}
            if binary_output:
                raw = np.ascontiguousarray(outputs, dtype="<f4").tobytes()
                output["parameters"] = {"binary_data_size": len(raw)}
                header = json.dumps({"model_name": options.name, "model_version": version, "outputs": [output]}).encode()
                return self.reply(200, header + raw, [("Inference-Header-Content-Length", str(len(header)))])
            output["data"] = [float(v) if np.isfinite(v) else "NaN" for v in outputs.reshape(-1)]
        answer = {"model_name": options.name, "model_version": version, "outputs": [output]}
        if fault == "big":
            answer["padding"] = "x" * (options.big_bytes)
        if fault == "stream":
            return self.stream(answer)
        self.reply(200, json.dumps(answer).replace('"NaN"', "NaN").encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make-data")
    parser.add_argument("--make-image-data")
    parser.add_argument("--input-shape", help="the input's shape per example in the metadata, e.g. 1,8,8 (default: the weight's rows)")
    parser.add_argument("--model")
    parser.add_argument("--name", default="teacher")
    parser.add_argument("--version", default="1")
    parser.add_argument("--port-file")
    parser.add_argument("--token")
    parser.add_argument("--onnx", help="serve this ONNX classifier through onnxruntime instead of --model")
    parser.add_argument("--answers", choices=["logits", "probabilities", "label", "label-name"], default="logits")
    parser.add_argument("--class-names", help="comma-separated class names for label-name and classification answers")
    parser.add_argument("--binary", action="store_true", help="offer and serve Triton's binary tensor extension")
    parser.add_argument("--fault", choices=["delay", "429", "500", "503", "reset", "badjson", "nan", "shape", "version", "big", "stream",
                                            "redirect", "topk-index", "topk-count", "probability", "label-range"])
    parser.add_argument("--fault-times", type=int, default=1_000_000_000)
    parser.add_argument("--fault-after", type=int)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--big-bytes", type=int, default=2_000_000)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--fault-seed", type=int, default=0)
    parser.add_argument("--redirect-to", help="the server (http://HOST:PORT) the redirect fault sends the client to")
    parser.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate (chain)")
    parser.add_argument("--tls-key", help="the certificate's PEM private key")
    options = parser.parse_args()
    if options.make_data:
        return make_data(options.make_data)
    if options.make_image_data:
        return make_image_data(options.make_image_data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(options)
    if options.tls_cert:
        import ssl
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(options.tls_cert, options.tls_key)
        # A client that refuses the certificate fails its handshake in accept(): an OSError
        # that socketserver ignores.
        server.socket = context.wrap_socket(server.socket, server_side=True)
    if options.port_file:
        with open(options.port_file + ".tmp", "w") as handle:
            handle.write(str(server.server_address[1]))
        import os
        os.replace(options.port_file + ".tmp", options.port_file)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
