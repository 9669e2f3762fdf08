"""The GPT judge client and the judged benchmarks, against a local OpenAI-compatible server on 127.0.0.1."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hub_llava.eval.judge import (
    JudgeClient,
    JudgeError,
    grade_mm_vet,
    llava_bench_content,
    prompts,
    review_llava_bench,
)
from hub_llava.eval.score import score_file

SAMPLES = Path(__file__).parent.parent / "samples" / "eval"
SECRET = "sk-test-not-a-real-key-123"


class FakeEndpoint:
    """Serves /v1/chat/completions: pops scripted (status, content) replies, then repeats `default`."""

    def __init__(self, default="8 6\nAssistant 2 is less detailed."):
        self.requests, self.script, self.default = [], [], default
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, content = endpoint.script.pop(0) if endpoint.script else (200, endpoint.default)
                payload = (
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                    if status == 200
                    else {"error": "x"}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = FakeEndpoint()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_client_retries_and_sends_the_key_only_in_the_header(endpoint, caplog):
    endpoint.script = [(503, None), (429, None)]
    client = JudgeClient(endpoint.url, "gpt-4-0314", backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        assert client.chat([{"role": "user", "content": "hi"}], temperature=0.2, max_tokens=5) == endpoint.default
    assert len(endpoint.requests) == 3
    assert endpoint.requests[-1]["path"] == "/v1/chat/completions"
    assert endpoint.requests[-1]["auth"] == f"Bearer {SECRET}"
    assert endpoint.requests[-1]["body"] == {
        "model": "gpt-4-0314", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2, "max_tokens": 5
    }  # fmt: skip
    assert "retry 2/6" in caplog.text and SECRET not in caplog.text


def test_client_gives_up_with_a_clear_error(endpoint):
    endpoint.script = [(400, None)]
    with pytest.raises(JudgeError, match=r"answered HTTP 400") as info:
        JudgeClient(endpoint.url, "m", backoff=0.01).chat([{"role": "user", "content": "hi"}])
    assert SECRET not in str(info.value)
    endpoint.script = [(500, None)] * 3
    with pytest.raises(JudgeError, match="HTTP 500"):
        JudgeClient(endpoint.url, "m", max_retries=2, backoff=0.01).chat([{"role": "user", "content": "hi"}])


def test_llava_bench_content_layout():
    rule = prompts()["llava_bench"]["rules"]["llava_bench_conv"]
    content = llava_bench_content({"text": "What is it?"}, ["A hill.", "Blue sky."], "Diamond Head.", "A hill.", rule)
    assert content.startswith(
        "[Context]\nA hill.\nBlue sky.\n\n[Question]\nWhat is it?\n\n[Assistant 1]\nDiamond Head.\n\n"
    )
    assert (
        "[End of Assistant 1]\n\n[Assistant 2]\nA hill.\n\n[End of Assistant 2]\n\n[System]\nWe would like" in content
    )
    assert content.endswith("does not affect your judgment.\n\n")


def _read(path):
    return [json.loads(line) for line in open(path)]


def test_llava_bench_reviews_then_score(endpoint, tmp_path):
    folder = SAMPLES / "llava-bench-in-the-wild"
    answers = [
        {"question_id": 0, "text": "A hill.", "answer_id": "a0"},
        {"question_id": 1, "text": "Green.", "answer_id": "a1"},
    ]
    endpoint.script = [(200, "8 6\nok"), (200, "bad reply")]
    client = JudgeClient(endpoint.url, backoff=0.01)
    reviews = review_llava_bench(client, _read(folder / "questions.jsonl"), _read(folder / "context.jsonl"),
                                 _read(folder / "answers_gpt4.jsonl"), answers)  # fmt: skip
    assert [r["tuple"] for r in reviews] == [[8.0, 6.0], [-1.0, -1.0]]
    assert [r["category"] for r in reviews] == ["llava_bench_conv", "llava_bench_detail"]
    assert reviews[0]["answer1_id"] == "TeyehNxHw5j8naXfEWaxWd" and reviews[0]["answer2_id"] == "a0"
    assert endpoint.requests[0]["body"]["model"] == "gpt-4-0314"  # the published judge by default
    assert endpoint.requests[0]["body"]["messages"][0]["content"].startswith("You are a helpful and precise assistant")
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reviews))
    result, _ = score_file("llava_bench", reviews=[path])
    # The unparsed review keeps (-1, -1), as LLaVA's summary does: (6 - 1) / 2 / ((8 - 1) / 2) = 71.4.
    assert result["score"] == 71.4 and result["details"]["runs"][str(path)]["all"]["unparsed"] == 1


# The official grader's few-shot prompt, transcribed from yuweihao/MM-Vet `mm-vet_evaluator.py` (a copy of its own,
# not read from judge_prompts.yaml): a triple-quoted string that ends with a newline after its last example.
MM_VET_PROMPT = (
    "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in "
    "the ground truth means it is totally right only when all elements in the ground truth are present in the "
    "prediction, and <OR> means it is totally right when any one element in the ground truth is present in the "
    "prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 "
    "(totally right). Just complete the last space of the correctness score.\n"
    "\n"
    "Question | Ground truth | Prediction | Correctness\n"
    "--- | --- | --- | ---\n"
    "What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5\n"
    "What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0\n"
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and "
    "Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland "
    "is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of "
    "these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. "
    "It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4\n"
    "Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and "
    "Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland "
    "is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of "
    "these countries do not accurately represent their landscapes. | The meme is using humor to point out the "
    "misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while "
    "Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to "
    "suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the "
    "unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0\n"
)
RETRY = "\nPredict the correctness of the answer (digit): "
MM_VET_TRUTH = {
    "v1_0": {"question": "What is x in the equation?", "answer": "-1<AND>-5", "capability": ["ocr", "math"]},
    "v1_1": {"question": "What is d in the last equation?", "answer": "1.25=5/4", "capability": ["ocr", "math"]},
}


def _sent(endpoint):
    return [(r["body"]["messages"][0]["content"], r["body"]["temperature"]) for r in endpoint.requests]


def test_mm_vet_prompt_is_the_official_grader_text(endpoint):
    endpoint.script = [(200, "0.5")]
    grades = grade_mm_vet(
        JudgeClient(endpoint.url, backoff=0.01), MM_VET_TRUTH, [{"question_id": 0, "text": "x = -1"}]
    )
    # The few-shot prompt's own final newline, then "\n": a blank line before the item's line; <AND> spaced out.
    query = MM_VET_PROMPT + "\n" + "What is x in the equation? | -1 <AND> -5 | x = -1 | "
    assert _sent(endpoint) == [(query, 0.0)]
    body = endpoint.requests[0]["body"]
    assert body["model"] == "gpt-4-0613" and body["max_tokens"] == 3 and len(body["messages"]) == 1
    assert grades == [{"question_id": "v1_0", "score": 0.5, "content": "0.5", "requests": 1, "parsed": True}]


def test_mm_vet_retries_as_the_official_grader(endpoint):
    client = JudgeClient(endpoint.url, backoff=0.01)
    query = MM_VET_PROMPT + "\nWhat is d in the last equation? | 1.25=5/4 | d = 1.25 | "
    # Not a number; out of [0, 1]; " 0.5" (its first space-separated field is empty); then "0.7 because" -> 0.7.
    endpoint.script = [(200, "banana"), (200, "1.5"), (200, " 0.5"), (200, "0.7 because")]
    (grade,) = grade_mm_vet(client, MM_VET_TRUTH, [{"question_id": "v1_1", "text": "d = 1.25"}])
    # The first retry goes at the first request's temperature (0.0); each retry then raises it by 0.5.
    assert _sent(endpoint) == [(query, 0.0), (query + RETRY, 0.0), (query + RETRY, 0.5), (query + RETRY, 1.0)]
    assert (grade["score"], grade["requests"], grade["parsed"]) == (0.7, 4, True)

    # Five retries, then 0.0: the official loop stops once the fifth retry is sent and never reads its reply.
    endpoint.requests.clear()
    endpoint.script = [(200, "n/a")] * 5 + [(200, "1.0")]
    (grade,) = grade_mm_vet(client, MM_VET_TRUTH, [{"question_id": "v1_1", "text": "d = 1.25"}])
    assert _sent(endpoint) == [(query, 0.0)] + [(query + RETRY, t) for t in (0.0, 0.5, 1.0, 1.5, 2.0)]
    assert grade == {"question_id": "v1_1", "score": 0.0, "content": "1.0", "requests": 6, "parsed": False}


def test_mm_vet_grades_written_by_the_judge_are_scored(endpoint, tmp_path):
    endpoint.script = [(200, "0.5"), (200, "1.0")]
    answers = [{"question_id": 0, "text": "x = -1"}, {"question_id": 1, "text": "d = 1.25"}]
    path = tmp_path / "grades_run1.jsonl"
    path.write_text(
        "".join(json.dumps(g) + "\n" for g in grade_mm_vet(JudgeClient(endpoint.url), MM_VET_TRUTH, answers))
    )
    (tmp_path / "mm-vet.json").write_text(json.dumps(MM_VET_TRUTH))
    result, _ = score_file("mm_vet", reviews=[path], questions=tmp_path / "mm-vet.json")
    assert result["score"] == 75.0 and result["details"]["capabilities"] == {"ocr": 75.0, "math": 75.0}


@pytest.mark.slow
def test_eval_with_judge_end_to_end(endpoint, tmp_path):
    from hub_llava.cli import main
    from hub_llava.testing import tiny_llava, tiny_processor

    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    args = ["eval", "--model", str(tmp_path / "tiny"), "--benchmarks", "llava_bench", "--data_dir", str(SAMPLES),
            "--output_dir", str(tmp_path / "out"), "--max_new_tokens", "4", "--judge_base_url", endpoint.url]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert results["llava_bench"]["score"] == 75.0 and results["llava_bench"]["name"] == "LLaVA-Bench-in-the-Wild"
    assert sorted(p.name for p in (tmp_path / "out" / "llava_bench").glob("reviews_run*.jsonl")) == [
        "reviews_run1.jsonl", "reviews_run2.jsonl", "reviews_run3.jsonl"
    ]  # fmt: skip
    assert len(endpoint.requests) == 6
    details = [json.loads(x) for x in (tmp_path / "out" / "llava_bench" / "details.jsonl").read_text().splitlines()]
    assert [d["question_id"] for d in details] == [0, 1] and details[0]["score"] == 6.0
    assert details[0]["question"] == "What is the name of this famous sight in the photo?"


@pytest.mark.slow
def test_eval_mm_vet_with_judge_end_to_end(endpoint, tmp_path):
    """`hub-llava eval --benchmarks mm_vet --judge_base_url`: answers, grade files per run, official-rule score."""
    from PIL import Image

    from hub_llava.cli import main
    from hub_llava.eval.files import read_jsonl
    from hub_llava.testing import tiny_llava, tiny_processor

    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    folder = tmp_path / "data" / "mm-vet"
    (folder / "images").mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (30, 20), (40 * i, 90, 200)).save(folder / "images" / f"v1_{i}.png")
    questions = [{"image": f"v1_{i}.png", "text": MM_VET_TRUTH[f"v1_{i}"]["question"], "question_id": i}
                 for i in range(2)]  # fmt: skip
    (folder / "llava-mm-vet.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "mm-vet.json").write_text(json.dumps(MM_VET_TRUTH))
    # Run 1: v1_0 -> 1.0, v1_1 unparsable then 0.2 on the retry; run 2: 0.5, 0.0.
    endpoint.script = [(200, "1.0"), (200, "unsure"), (200, "0.2"), (200, "0.5"), (200, "0.0")]
    args = ["eval", "--model", str(tmp_path / "tiny"), "--benchmarks", "mm_vet", "--data_dir", str(tmp_path / "data"),
            "--output_dir", str(tmp_path / "out"), "--max_new_tokens", "4", "--judge_base_url", endpoint.url,
            "--judge_runs", "2"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())["results"]["mm_vet"]
    # Per run: (1.0 + 0.2) / 2 = 60.0 and (0.5 + 0.0) / 2 = 25.0; mean 42.5; population std 17.5.
    assert result["score"] == 42.5 and result["details"]["runs"] == [60.0, 25.0] and result["details"]["std"] == 17.5
    assert result["details"]["capabilities"] == {"ocr": 42.5, "math": 42.5} and result["n"] == 2
    answers = read_jsonl(tmp_path / "out" / "mm_vet" / "answers.jsonl")
    assert endpoint.requests[0]["body"]["messages"][0]["content"].endswith(
        "\nWhat is x in the equation? | -1 <AND> -5 | " + answers[0]["text"] + " | "
    )
    run1 = read_jsonl(tmp_path / "out" / "mm_vet" / "grades_run1.jsonl")
    assert [(g["question_id"], g["score"], g["requests"]) for g in run1] == [("v1_0", 1.0, 1), ("v1_1", 0.2, 2)]
    details = read_jsonl(tmp_path / "out" / "mm_vet" / "details.jsonl")
    assert [(d["question_id"], d["score"], d["target"]) for d in details] == [
        (0, 0.75, "-1<AND>-5"),
        (1, 0.1, "1.25=5/4"),
    ]


@pytest.mark.slow
def test_judge_cache_makes_a_rerun_cost_no_calls(endpoint, tmp_path):
    """LLaVA-Bench judged into one output folder, then again into another with the same cache: no new request, the
    same score. The three runs at temperature 0.2 are three cache entries (samples 1-3), not one read thrice."""
    from hub_llava.cli import main
    from hub_llava.testing import tiny_llava, tiny_processor

    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    endpoint.script = [(200, "8 6\nok"), (200, "7 5\nok"), (200, "8 4\nok"), (200, "9 9\nok"), (200, "6 3\nok"),
                       (200, "8 8\nok")]  # fmt: skip
    scores = []
    for out in ("first", "second"):
        args = ["eval", "--model", str(tmp_path / "tiny"), "--benchmarks", "llava_bench", "--data_dir", str(SAMPLES),
                "--output_dir", str(tmp_path / out), "--max_new_tokens", "4", "--judge_base_url", endpoint.url,
                "--judge_cache", str(tmp_path / "cache")]  # fmt: skip
        assert main(args) == 0
        scores.append(json.loads((tmp_path / out / "results.json").read_text())["results"]["llava_bench"]["score"])
        assert len(endpoint.requests) == 6  # 2 questions x 3 runs, all on the first pass
    assert scores[0] == scores[1]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 6
    first = [r["tuple"] for r in _read(tmp_path / "first" / "llava_bench" / "reviews_run2.jsonl")]
    assert first == [r["tuple"] for r in _read(tmp_path / "second" / "llava_bench" / "reviews_run2.jsonl")]


def test_cache_key_covers_model_prompt_settings_and_sample():
    from hub_llava.eval.judge import ReplyCache

    body = {"model": "gpt-4-0314", "messages": [{"role": "user", "content": "Q"}], "temperature": 0.2, "max_tokens": 9}
    key = ReplyCache.key(body, 1)
    assert ReplyCache.key(dict(body), 1) == key
    changed = [{**body, "model": "gpt-4o"}, {**body, "messages": [{"role": "user", "content": "Q2"}]},
               {**body, "temperature": 0.0}, {**body, "max_tokens": 10}]  # fmt: skip
    assert len({key, ReplyCache.key(body, 2), *(ReplyCache.key(b, 1) for b in changed)}) == 6
