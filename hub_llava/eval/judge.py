"""GPT judges for LLaVA-Bench-in-the-Wild and MM-Vet, through any OpenAI-compatible chat-completions endpoint.

The key is read from an environment variable (default `OPENAI_API_KEY`) and only ever sent in the Authorization
header: never logged, printed or written. Requests are retried with exponential backoff on rate limits, server
errors and network errors. The prompts are data (`judge_prompts.yaml`).

Replies are cached on disk (`cache_dir`, one JSON file per request) keyed by the model, the messages, the settings
(temperature, max_tokens) and the sample number: a rerun of an evaluation (an interrupted one, another output folder,
the same answers scored again) costs no calls. The sample number keeps independent runs independent: LLaVA-Bench's
three judge runs at temperature 0.2 are samples 1, 2, 3 of the same request, never one cached reply read thrice.
"""

import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from hub_llava.errors import UserError
from hub_llava.eval.metrics.mm_vet import parse_grade
from hub_llava.eval.metrics.reviews import parse_review_scores

logger = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


@cache
def prompts() -> dict:
    return yaml.safe_load(resources.files("hub_llava.eval").joinpath("judge_prompts.yaml").read_text(encoding="utf-8"))


class JudgeError(UserError, RuntimeError):
    pass


def default_cache_dir() -> Path:
    """`$HUB_LLAVA_CACHE/judge`, by default `~/.cache/hub_llava/judge`."""
    return Path(os.environ.get("HUB_LLAVA_CACHE", Path.home() / ".cache" / "hub_llava")) / "judge"


class ReplyCache:
    """Judge replies on disk: `<folder>/<key[:2]>/<key>.json`, written atomically (a killed run leaves no half file)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    @staticmethod
    def key(body: dict, sample: int) -> str:
        settings = {k: body[k] for k in ("model", "messages", "temperature", "max_tokens")}
        return hashlib.sha256(json.dumps({**settings, "sample": sample}, sort_keys=True).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        return json.loads(path.read_text(encoding="utf-8"))["content"] if path.is_file() else None

    def put(self, key: str, body: dict, content: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as handle:
            json.dump({"model": body["model"], "content": content}, handle, ensure_ascii=False)
        os.replace(handle.name, path)


class JudgeClient:
    """A minimal chat-completions client.

    Args:
        base_url (`str`): e.g. `https://api.openai.com/v1` (`/chat/completions` is appended).
        model (`str`): the judge model name (None: each benchmark's published judge, e.g. gpt-4-0314).
        api_key_env (`str`, *optional*, defaults to `"OPENAI_API_KEY"`): environment variable holding the key.
        max_retries (`int`, *optional*, defaults to `6`): attempts after the first one.
        backoff (`float`, *optional*, defaults to `2.0`): first wait in seconds, doubled at each retry.
        timeout (`float`, *optional*, defaults to `120`): seconds per request.
        cache_dir (`str`, *optional*): where replies are cached (see the module docstring); None: no cache.

    `calls` counts the requests sent, `cached` the replies read from the cache.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key_env: str = "OPENAI_API_KEY", max_retries: int = 6,
                 backoff: float = 2.0, timeout: float = 120, cache_dir=None):  # fmt: skip
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key_env = model, api_key_env
        self.max_retries, self.backoff, self.timeout = max_retries, backoff, timeout
        self.cache = ReplyCache(cache_dir) if cache_dir else None
        self.calls = self.cached = 0

    def _request(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def chat(self, messages: list[dict], temperature: float = 0.0, max_tokens: int = 1024, model: str | None = None,
             sample: int = 1) -> str:  # fmt: skip
        """Returns the first choice's message content, from the cache or the endpoint (retrying transient failures).
        `model` is the default used when the client was built without one; `sample` numbers independent runs of the
        same request (their cache entries differ)."""
        body = {
            "model": self.model or model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        key = self.cache.key(body, sample) if self.cache else None
        if key and (content := self.cache.get(key)) is not None:
            self.cached += 1
            return content
        content = self._send(body)
        if key:
            self.cache.put(key, body, content)
        return content

    def _send(self, body: dict) -> str:
        wait = self.backoff
        for attempt in range(self.max_retries + 1):
            try:
                self.calls += 1
                return self._request(body)["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as error:
                if error.code not in RETRY_STATUS or attempt == self.max_retries:
                    raise JudgeError(f"Judge endpoint {self.url} answered HTTP {error.code}.") from None
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt == self.max_retries:
                    raise JudgeError(f"Judge endpoint {self.url} unreachable: {error}.") from None
                reason = str(error)
            logger.warning(
                "Judge request failed (%s); retry %d/%d in %.1fs", reason, attempt + 1, self.max_retries, wait
            )
            time.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")


def llava_bench_content(question: dict, caption, reference: str, answer: str, rule: dict) -> str:
    """The judge's user message, laid out as LLaVA's `eval_gpt_review_bench.py` does."""
    caption = "\n".join(caption) if isinstance(caption, list) else caption
    role = rule["role"]
    return (
        f"[Context]\n{caption}\n\n[Question]\n{question['text']}\n\n"
        f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule['prompt']}\n\n"
    )


def review_llava_bench(client: JudgeClient, questions: list[dict], contexts: list[dict], references: list[dict],
                       answers: list[dict], run: int = 1) -> list[dict]:  # fmt: skip
    """Review run `run`: rows as LLaVA's review files (`question_id`, `category`, `content`, `tuple`)."""
    config = prompts()["llava_bench"]
    captions = {c["image"]: c["caption"] for c in contexts}
    reference = {str(r["question_id"]): r for r in references}
    answer = {str(a["question_id"]): a for a in answers}
    reviews = []
    for index, question in enumerate(questions, 1):
        qid = str(question["question_id"])
        if qid not in answer or qid not in reference:
            raise ValueError(
                f"LLaVA-Bench question {qid} has no {'answer' if qid not in answer else 'reference answer'}."
            )
        category = "llava_bench_" + question["category"]
        content = llava_bench_content(question, captions[question["image"]], reference[qid]["text"], answer[qid]["text"],
                                      config["rules"][category])  # fmt: skip
        messages = [{"role": "system", "content": config["system"]}, {"role": "user", "content": content}]
        review = client.chat(messages, config["temperature"], config["max_tokens"], config["model"], sample=run)
        reviews.append({
            "id": index, "question_id": question["question_id"], "answer1_id": reference[qid].get("answer_id", qid),
            "answer2_id": answer[qid].get("answer_id", qid), "category": category, "content": review,
            "tuple": parse_review_scores(review),
        })  # fmt: skip
    return reviews


def mm_vet_query(question: str, answer: str, prediction: str) -> str:
    """The grader's user message: the few-shot prompt, "\\n", then "question | ground truth | prediction | " with
    spaces put around the ground truth's <AND> / <OR>, as the official grader builds it."""
    truth = answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    return prompts()["mm_vet"]["prompt"] + "\n" + " | ".join([question, truth, prediction, ""])


def _grade_mm_vet_item(client: JudgeClient, query: str, run: int = 1) -> dict:
    """One grade, with the official grader's retries: a reply that is not a grade is asked again with the retry
    instruction appended, at the current temperature (0.0 for the first retry), which then rises by 0.5; when the
    fifth retry has been sent the grade is 0.0 without reading its reply, as the official loop does."""
    config = prompts()["mm_vet"]

    def ask(text: str, temperature: float) -> str:
        messages = [{"role": "user", "content": text}]
        return client.chat(messages, temperature, config["max_tokens"], config["model"], sample=run)

    temperature = config["temperature"]
    reply = ask(query, temperature)
    for attempt in range(1, config["retries"] + 1):
        grade = parse_grade(reply)
        if grade is not None:
            return {"score": grade, "content": reply, "requests": attempt, "parsed": True}
        reply = ask(query + config["retry_instruction"], temperature)
        temperature += config["retry_temperature_step"]
    return {"score": 0.0, "content": reply, "requests": config["retries"] + 1, "parsed": False}


def grade_mm_vet(client: JudgeClient, ground_truth: dict, answers: list[dict], run: int = 1) -> list[dict]:
    """Grading run `run` of MM-Vet answers (question_id 0 or "v1_0") against the official `mm-vet.json`.

    Returns rows `{"question_id": "v1_<i>", "score", "content" (the judge's reply), "requests", "parsed"}`: the
    grade file of one run, as `hub_llava.eval.benchmarks.mm_vet` reads it.
    """
    grades = []
    for answer in answers:
        qid = str(answer["question_id"])
        key = qid if qid in ground_truth else f"v1_{qid}"
        if key not in ground_truth:
            raise ValueError(f"MM-Vet answer {qid!r} matches no question of the ground truth.")
        item = ground_truth[key]
        grade = _grade_mm_vet_item(client, mm_vet_query(item["question"], item["answer"], answer["text"]), run)
        grades.append({"question_id": key, **grade})
    return grades
