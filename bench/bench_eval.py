"""Evaluation backends on CPU: the openai backend against the stand-in server vs the HF backend, same run.

1. Questions/s answering POPE-shaped questions (the bundled sample images, repeated) with the tiny model: the HF
   backend at batch 8 (the baseline) and the openai backend at 1, 8 and 32 concurrent requests against the stand-in
   server (`hub_llava.eval.standin_server`, same model and dtype, batching the requests in flight), answers checked
   equal to the baseline's.
2. The client's own overhead per question: the openai backend against a server in another process that answers
   every request at once with a fixed reply (no model), CPU seconds of THIS process (request building, JSON, HTTP,
   threads, parsing) per question; plus the one-off cost of encoding an image (padded PNG data URL; cached per file).

    python bench/bench_eval.py [--questions 64] [--max_new_tokens 16] [--overhead_questions 2000] [--threads 1]

torch runs with `--threads` intra-op threads (default 1) everywhere, the server's worker thread included: on a shared
2-core machine torch's default (one thread per core) made the tiny model's generation 5-7x slower in the main thread
(OpenMP threads spinning against the other load), which would compare thread settings, not backends.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "eval"
REPLY = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Yes"}}]}).encode()


def machine_load() -> str:
    start = time.perf_counter()
    sum(range(10**7))
    return f"load average {os.getloadavg()[0]:.1f}; sum(range(1e7)) {time.perf_counter() - start:.2f} s (~0.2 s idle)"


def requests_for(n: int) -> list[dict]:
    base = [json.loads(x) for x in (SAMPLES / "pope" / "llava_pope_test.jsonl").read_text().splitlines()]
    rows = (base * n)[:n]
    return [{"question_id": i, "text": r["text"], "image": SAMPLES / "pope" / "val2014" / r["image"]}
            for i, r in enumerate(rows)]  # fmt: skip


def timed(backend, requests, max_new_tokens) -> tuple[float, list[str]]:
    answers = [None] * len(requests)
    start = time.perf_counter()
    for index, text in backend.answer(requests, {"max_new_tokens": max_new_tokens}):
        answers[index] = text
    return len(requests) / (time.perf_counter() - start), answers


def bench_throughput(questions: int, max_new_tokens: int, threads: int) -> None:
    import torch

    from hub_llava.eval.backend import HFBackend
    from hub_llava.eval.generation import Generator
    from hub_llava.eval.openai_backend import OpenAIBackend
    from hub_llava.eval.run import load_model
    from hub_llava.eval.standin_server import StandInServer
    from hub_llava.testing import tiny_llava, tiny_processor
    from hub_llava.token_stream import TokenStream

    with tempfile.TemporaryDirectory() as tmp:
        processor = tiny_processor()
        tiny_llava(processor.tokenizer).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        TokenStream.from_processor(processor).save_pretrained(tmp)
        generator = Generator(*load_model(tmp))  # float16, as `hub-llava eval` loads by default
    torch.set_num_threads(threads)
    requests = requests_for(questions)
    timed(HFBackend(generator, 8), requests[:8], max_new_tokens)  # warm-up: the first generate call pays set-up
    print(f"{machine_load()}; torch threads {torch.get_num_threads()}")
    baseline, reference = timed(HFBackend(generator, 8), requests, max_new_tokens)
    print(f"hf backend, batch 8 (baseline): {baseline:.1f} questions/s")
    for concurrency in (1, 8, 32):
        with StandInServer(generator, max_batch=32) as server:
            rate, answers = timed(
                OpenAIBackend([server.url], "tiny", concurrency=concurrency), requests, max_new_tokens
            )
        sizes = server.batch_sizes
        print(f"openai backend, {concurrency} concurrent: {rate:.1f} questions/s (x{rate / baseline:.2f} the baseline; "
              f"server batches mean {sum(sizes) / len(sizes):.1f}, max {max(sizes)}; answers == baseline: "
              f"{answers == reference})")  # fmt: skip
    print(machine_load())


class _Instant(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)

    def log_message(self, *args):
        pass


def serve_instant() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Instant)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def bench_overhead(questions: int) -> None:
    from PIL import Image

    from hub_llava.eval.openai_backend import OpenAIBackend, image_data_url

    server = subprocess.Popen([sys.executable, __file__, "--serve_instant"], stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        requests = requests_for(questions)
        for concurrency in (1, 8):
            backend = OpenAIBackend([url], "m", concurrency=concurrency)
            list(backend.answer(requests[:50], {"max_new_tokens": 8}))  # warm: connections, encoded images
            cpu, wall = time.process_time(), time.perf_counter()
            list(backend.answer(requests, {"max_new_tokens": 8}))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"client overhead, {concurrency} concurrent, instant server in another process: "
                  f"{1000 * cpu / questions:.3f} ms CPU per question ({1000 * wall / questions:.3f} ms wall)")  # fmt: skip
    finally:
        server.terminate()
        server.wait()
    image = Image.new("RGB", (640, 480), (30, 120, 200))
    start = time.perf_counter()
    for _ in range(20):
        image_data_url(image)
    print(f"image encoding, 640x480 -> padded 640x640 PNG data URL: {(time.perf_counter() - start) / 20 * 1000:.1f} ms "
          "(once per image file; cached)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=16)
    parser.add_argument("--overhead_questions", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1).")
    parser.add_argument("--serve_instant", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instant:
        serve_instant()
    else:
        bench_throughput(args.questions, args.max_new_tokens, args.threads)
        bench_overhead(args.overhead_questions)
