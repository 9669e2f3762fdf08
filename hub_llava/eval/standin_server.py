"""A small OpenAI-compatible chat-completions server on 127.0.0.1 that answers from a local checkpoint: the stand-in
for `vllm serve` in tests, `make demo` and `bench/bench_eval.py` (nothing is downloaded, answers are real).

It renders each request as hub_llava's `Generator` does (vicuna_v1 prompt, LLaVA's token ids, the image through the
checkpoint's processor) and answers greedily, so its answers equal the HF backend's. Requests that arrive while the
model is busy are answered together in the next batch (up to `max_batch`), as a serving engine batches them.
`faults` makes it misbehave on purpose, one entry per incoming request in arrival order (then it behaves):
`{"status": 503}` (an HTTP error), `{"malformed": True}` (200 with a body that is not a completion),
`{"sleep": 2.0}` (answers late), `{"close": True}` (drops the connection without answering).

    python -m hub_llava.eval.standin_server --model CKPT -- hub-llava eval --backend openai --base_url {url} ...

runs the command with `{url}` replaced by the server's URL, then stops the server (exit status: the command's).
"""

import argparse
import base64
import io
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)


class _Job:
    def __init__(self, text: str, image, max_tokens: int):
        self.text, self.image, self.max_tokens = text, image, max_tokens
        self.done, self.result, self.error = threading.Event(), None, None


def _decode_data_url(url: str):
    from PIL import Image

    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise ValueError("only base64 data URLs are supported")
    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def parse_request(body: dict) -> tuple[str, object, int]:
    """(question text, PIL image or None, max_tokens) of a chat-completions body with one user message."""
    (message,) = [m for m in body["messages"] if m["role"] == "user"]
    content = message["content"]
    if isinstance(content, str):
        return content, None, int(body.get("max_tokens", 16))
    texts = [part["text"] for part in content if part["type"] == "text"]
    images = [_decode_data_url(part["image_url"]["url"]) for part in content if part["type"] == "image_url"]
    if len(images) > 1:
        raise ValueError("one image per request")
    return "".join(texts), (images[0] if images else None), int(body.get("max_tokens", 16))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout test) makes the late reply fail: that is the client's choice, not an error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class StandInServer:
    """Serves `/v1/chat/completions` (and `/v1/models`) from a `Generator`.

    Args:
        generator: a `hub_llava.eval.generation.Generator` around the model and its processor.
        model_name (`str`, *optional*, defaults to `"standin"`): the name `/v1/models` lists.
        max_batch (`int`, *optional*, defaults to `32`): most requests answered in one `generate` call.
        faults (`list[dict]`, *optional*): misbehaviour per incoming request (see the module docstring).

    `requests` counts requests per question text (faulted ones included), `answered` the successful answers,
    `authorizations` the Authorization headers received (to check a key is sent, and only there).
    """

    def __init__(self, generator, model_name: str = "standin", max_batch: int = 32, faults: list | None = None):
        self.generator, self.model_name, self.max_batch = generator, model_name, max_batch
        self.faults, self.lock = list(faults or []), threading.Lock()
        self.requests, self.answered, self.authorizations, self.batch_sizes = Counter(), Counter(), Counter(), []
        self.jobs: queue.Queue = queue.Queue()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._work, daemon=True)]  # fmt: skip

    @classmethod
    def from_pretrained(cls, model_path: str, dtype: str = "float16", **kwargs) -> "StandInServer":
        from hub_llava.eval.generation import Generator
        from hub_llava.eval.run import load_model

        return cls(Generator(*load_model(model_path, dtype)), model_name=model_path, **kwargs)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.jobs.put(None)

    def _next_fault(self) -> dict | None:
        with self.lock:
            return self.faults.pop(0) if self.faults else None

    def _work(self) -> None:
        """Answers the queued jobs in batches of equal max_tokens (greedy + left padding: the same answers)."""
        while (job := self.jobs.get()) is not None:
            batch = [job]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            if batch[-1] is None:
                batch.pop()
                self.jobs.put(None)
            for max_tokens in sorted({j.max_tokens for j in batch}):
                group = [j for j in batch if j.max_tokens == max_tokens]
                self.batch_sizes.append(len(group))
                try:
                    texts = self.generator.generate([j.text for j in group], [j.image for j in group],
                                                    {"max_new_tokens": max_tokens})  # fmt: skip
                except Exception as error:  # answered as a 500, as a server would
                    texts, error_text = [None] * len(group), f"{error.__class__.__name__}: {error}"
                for j, text in zip(group, texts):
                    j.result, j.error = text, None if text is not None else error_text
                    j.done.set()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _send(self, status: int, payload, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    return self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                try:
                    text, image, max_tokens = parse_request(json.loads(body))
                except (ValueError, KeyError, TypeError) as error:
                    return self._send(400, {"error": {"message": f"bad request: {error}"}})
                with server.lock:
                    server.requests[text] += 1
                    server.authorizations[self.headers.get("Authorization")] += 1
                fault = server._next_fault() or {}
                if "status" in fault:
                    return self._send(fault["status"], {"error": {"message": "injected fault"}})
                if fault.get("malformed"):
                    return self._send(200, None, raw=b'{"choices": [], "note": "not a completion"')
                if fault.get("close"):
                    self.close_connection = True
                    return
                time.sleep(fault.get("sleep", 0))
                job = _Job(text, image, max_tokens)
                server.jobs.put(job)
                job.done.wait()
                if job.error:
                    return self._send(500, {"error": {"message": job.error}})
                with server.lock:
                    server.answered[text] += 1
                self._send(200, {
                    "id": f"chatcmpl-{sum(server.answered.values())}", "object": "chat.completion",
                    "created": int(time.time()), "model": server.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": job.result},
                                 "finish_reason": "stop"}],
                })  # fmt: skip

            def log_message(self, *args):
                pass

        return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Checkpoint folder (llava-hf layout) to answer with.")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    parser.add_argument("--max_batch", type=int, default=32)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...: run it with {url} substituted.")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with StandInServer.from_pretrained(args.model, args.dtype, max_batch=args.max_batch) as server:
        logger.info("stand-in server for %s at %s", args.model, server.url)
        if not command:
            print(server.url, flush=True)
            threading.Event().wait()  # serve until interrupted
        return subprocess.call([part.replace("{url}", server.url) for part in command])


if __name__ == "__main__":
    sys.exit(main())
