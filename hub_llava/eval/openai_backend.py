"""`--backend openai`: any OpenAI-compatible chat-completions server (`vllm serve`, SGLang, TGI, ...).

Each question is one request: a user message with the image as a PNG data URL (padded to a square with LLaVA's CLIP
mean colour first, so the server sees LLaVA's `image_aspect_ratio: pad` image whether or not its own processor pads)
and the question text, `temperature` 0 and the benchmark's `max_tokens`. The prompt around it is the SERVER's chat
template: serve the checkpoint with its own template (hub_llava's checkpoints carry vicuna_v1) and use `--parity N` to
measure how far the server's answers are from the HF backend's (which feeds LLaVA's exact token ids).

At most `concurrency` requests are in flight; questions are spread round-robin over the servers. A failed request is
retried on the next server: connection errors, timeouts, 408/409/429/5xx and malformed responses are retried (after
every server failed once in a round, the client waits `backoff` seconds, doubled each round); other 4xx answers are
the request's fault and are not. When a question cannot be answered, the answers received so far are still yielded
(the runner writes them) and then a `BackendError` names the server, the question and the reason.
"""

import base64
import http.client
import io
import itertools
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Iterator
from functools import lru_cache

from hub_llava.eval.backend import BackendError

logger = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class RequestFailed(Exception):
    """One attempt failed; `retry` says whether another attempt can help."""

    def __init__(self, reason: str, retry: bool):
        super().__init__(reason)
        self.reason, self.retry = reason, retry


@lru_cache(maxsize=512)
def _file_data_url(path: str) -> str:
    # Benchmarks ask several questions per image (POPE: ~18 per image over its categories): encode each file once.
    from hub_llava.eval.docs import resolve_image

    return image_data_url(resolve_image(path))


def image_data_url(image) -> str:
    """A PIL image as the PNG data URL sent to the server, padded to a square as LLaVA-1.5 does (lossless: the server
    decodes exactly these pixels)."""
    from hub_llava.processing import expand_to_square

    buffer = io.BytesIO()
    expand_to_square(image.convert("RGB")).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_body(model: str, text: str, image_url: str | None, max_tokens: int) -> dict:
    """The chat-completions request of one question: the image first, as LLaVA puts `<image>` before the question."""
    content = ([{"type": "image_url", "image_url": {"url": image_url}}] if image_url else []) + [
        {"type": "text", "text": text}
    ]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def parse_reply(data: bytes) -> str:
    """The first choice's message content; anything else is a malformed response."""
    try:
        content = json.loads(data)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RequestFailed(f"malformed response {data[:120]!r}", retry=True) from None
    if not isinstance(content, str):
        raise RequestFailed(f"malformed response (content {content!r})", retry=True)
    return content.strip()  # LLaVA strips the output


class _Server:
    def __init__(self, base_url: str):
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"--base_url {base_url!r} is not an http(s) URL (e.g. http://localhost:8000/v1).")
        if parsed.username or parsed.password:  # credentials never go into logs, errors or results.json
            raise ValueError("--base_url must not carry credentials; the key is read from --api_key_env.")
        self.url, self.scheme, self.netloc = base_url.rstrip("/"), parsed.scheme, parsed.netloc
        self.path = parsed.path + "/chat/completions"


class OpenAIBackend:
    """A chat-completions client with a bounded pool of concurrent requests over several servers.

    Args:
        base_urls (`list[str]`): the servers, e.g. `["http://gpu1:8000/v1", "http://gpu2:8000/v1"]`.
        model (`str`): the model name the servers serve (`vllm serve PATH` serves it as `PATH`).
        concurrency (`int`, *optional*, defaults to `8`): requests in flight at once, over all servers.
        timeout (`float`, *optional*, defaults to `600`): seconds to wait for one response.
        max_retries (`int`, *optional*, defaults to `4`): rounds of retries (each round tries every server once).
        backoff (`float`, *optional*, defaults to `1.0`): seconds to wait after a failed round, doubled each round.
        api_key_env (`str`, *optional*, defaults to `"OPENAI_API_KEY"`): environment variable with the key, sent
            only in the Authorization header (never logged).
    """

    name = "openai"

    def __init__(self, base_urls: list[str], model: str, *, concurrency: int = 8, timeout: float = 600.0,
                 max_retries: int = 4, backoff: float = 1.0, api_key_env: str = "OPENAI_API_KEY"):  # fmt: skip
        if concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, got {concurrency}.")
        self.servers = [_Server(url) for url in base_urls]
        self.model, self.concurrency, self.timeout = model, concurrency, timeout
        self.max_retries, self.backoff, self.api_key_env = max_retries, backoff, api_key_env
        self.shard_index, self.num_shards, self.writes = _shard()
        self._local = threading.local()  # one keep-alive connection per thread and server

    def describe(self) -> dict:
        return {"name": self.name, "base_urls": [s.url for s in self.servers], "served_model": self.model,
                "concurrency": self.concurrency}  # fmt: skip

    def close(self) -> None:
        pass  # keep-alive connections belong to the worker threads of each `answer` call, closed with them

    def answer(self, requests: list[dict], generation_kwargs: dict) -> Iterator[tuple[int, str]]:
        """Yields `(index, answer)` as answers arrive; at most `concurrency` requests in flight.

        The workers are daemon threads fed one question per answer received: an interrupted run (Ctrl-C, an error
        while writing) stops at once instead of waiting for the requests in flight to time out."""
        max_tokens = generation_kwargs["max_new_tokens"]
        jobs, results = queue.SimpleQueue(), queue.SimpleQueue()

        def work():
            while (job := jobs.get()) is not None:
                index, request = job
                try:
                    results.put((index, self._answer_one(index, request, max_tokens), None))
                except Exception as error:  # BackendError, or a bug: raised in the caller's thread
                    results.put((index, None, error))

        workers = [threading.Thread(target=work, daemon=True, name=f"openai-{i}")
                   for i in range(min(self.concurrency, len(requests)))]  # fmt: skip
        for worker in workers:
            worker.start()
        pending = iter(enumerate(requests))
        in_flight, failure = 0, None
        try:
            for job in itertools.islice(pending, len(workers)):
                jobs.put(job)
                in_flight += 1
            while in_flight:
                index, text, error = results.get()
                in_flight -= 1
                if error is not None:
                    failure = failure or error  # stop sending; the requests in flight still finish
                else:
                    yield index, text
                if failure is None and (job := next(pending, None)) is not None:
                    jobs.put(job)
                    in_flight += 1
        finally:
            for _ in workers:
                jobs.put(None)
        if failure is not None:
            raise failure

    def _answer_one(self, index: int, request: dict, max_tokens: int) -> str:
        image = request.get("image")
        if image is None:
            url = None
        elif hasattr(image, "convert"):
            url = image_data_url(image)
        else:
            url = _file_data_url(str(image))
        body = json.dumps(chat_body(self.model, request["text"], url, max_tokens)).encode()
        attempts = 0
        for round_ in range(self.max_retries + 1):
            for k in range(len(self.servers)):
                server = self.servers[(index + k) % len(self.servers)]  # question i starts on server i mod n
                attempts += 1
                try:
                    return parse_reply(self._post(server, body))
                except RequestFailed as failed:
                    if not failed.retry or attempts == (self.max_retries + 1) * len(self.servers):
                        raise self._error(server, request, failed.reason, attempts) from None
                    logger.warning("%s question %s: %s (attempt %d)", server.url, request["question_id"],
                                   failed.reason, attempts)  # fmt: skip
            time.sleep(self.backoff * 2**round_)
        raise AssertionError("unreachable")

    def _error(self, server: _Server, request: dict, reason: str, attempts: int) -> BackendError:
        return BackendError(
            f"{server.url} could not answer question {request['question_id']!r} ({reason}) after {attempts} "
            f"attempt{'s' if attempts > 1 else ''}; the answers received so far are kept: rerun to resume"
        )

    def _connection(self, server: _Server, fresh: bool = False):
        connections = self._local.__dict__.setdefault("connections", {})
        if fresh or server.netloc not in connections:
            if server.netloc in connections:
                connections[server.netloc].close()
            cls = http.client.HTTPSConnection if server.scheme == "https" else http.client.HTTPConnection
            connections[server.netloc] = cls(server.netloc, timeout=self.timeout)
        return connections[server.netloc]

    def _post(self, server: _Server, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for reuse in (True, False):
            connection = self._connection(server, fresh=not reuse)
            try:
                connection.request("POST", server.path, body, headers)
                response = connection.getresponse()
                data = response.read()
                break
            except TimeoutError:
                connection.close()
                raise RequestFailed(f"no response within {self.timeout:g} s", retry=True) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                connection.close()
                if not reuse:  # a kept-alive connection the server closed gets one fresh try, not counted
                    raise RequestFailed(f"connection lost ({error.__class__.__name__})", retry=True) from None
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise RequestFailed(f"unreachable ({error.__class__.__name__}: {error})", retry=True) from None
        if response.status != 200:
            detail = data[:120].decode("utf-8", "replace").strip()
            raise RequestFailed(f"HTTP {response.status} {detail!r}", retry=response.status in RETRY_STATUS)
        return data


def _shard() -> tuple[int, int, bool]:
    """Several processes (`accelerate launch`) split the questions as the HF backend does."""
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes, True
