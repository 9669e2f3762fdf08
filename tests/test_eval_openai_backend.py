"""`hub-llava eval --backend openai` against the OpenAI-compatible stand-in server (127.0.0.1, answers from the tiny
model): answers equal the HF backend's, requests as servers expect them, faults retried or reported in one line."""

import base64
import io
import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from hub_llava.cli import main
from hub_llava.eval.files import read_jsonl
from hub_llava.eval.generation import Generator
from hub_llava.eval.openai_backend import OpenAIBackend, RequestFailed, chat_body, image_data_url, parse_reply
from hub_llava.eval.run import load_model
from hub_llava.eval.standin_server import StandInServer
from hub_llava.testing import tiny_llava, tiny_processor
from hub_llava.token_stream import TokenStream

SAMPLES = Path(__file__).parent.parent / "samples" / "eval"
POPE_QUESTIONS = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(folder)
    processor.save_pretrained(folder)
    TokenStream.from_processor(processor).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def generator(checkpoint):
    return Generator(*load_model(str(checkpoint)))


@pytest.fixture(scope="module")
def hf_run(checkpoint, tmp_path_factory):
    """The reference: the HF backend's answers on the sample benchmarks."""
    output = tmp_path_factory.mktemp("hf")
    assert _eval(checkpoint, output, "pope,mme,scienceqa", "--batch_size", "4") == 0
    return output


def _eval(checkpoint, output, benchmarks="pope", *extra):
    return main(["eval", "--model", str(checkpoint), "--benchmarks", benchmarks, "--data_dir", str(SAMPLES),
                 "--output_dir", str(output), "--max_new_tokens", "6", *extra])  # fmt: skip


def _openai(checkpoint, output, urls, benchmarks="pope", *extra):
    flags = [f for url in urls for f in ("--base_url", url)]
    return _eval(checkpoint, output, benchmarks, "--backend", "openai", *flags, *extra)


def _texts(folder, key="pope"):
    return [(r["question_id"], r["prompt"], r["text"]) for r in read_jsonl(folder / key / "answers.jsonl")]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket is closed


def test_request_layout_and_reply_parsing():
    image = Image.new("RGB", (30, 20), (200, 10, 10))
    url = image_data_url(image)
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (30, 30)  # padded to a square with LLaVA's CLIP mean colour, centred
    assert sent.getpixel((0, 0)) == (122, 116, 104) and sent.getpixel((15, 15)) == (200, 10, 10)
    assert chat_body("m", "Is it red?", url, 128) == {
        "model": "m", "temperature": 0, "max_tokens": 128,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                  {"type": "text", "text": "Is it red?"}]}],
    }  # fmt: skip
    assert chat_body("m", "Why?", None, 8)["messages"][0]["content"] == [{"type": "text", "text": "Why?"}]
    assert parse_reply(b'{"choices": [{"message": {"role": "assistant", "content": " Yes \\n"}}]}') == "Yes"
    for bad in (b"not json", b'{"choices": []}', b'{"choices": [{"message": {"content": null}}]}'):
        with pytest.raises(RequestFailed, match="malformed response") as info:
            parse_reply(bad)
        assert info.value.retry


@pytest.mark.slow
def test_openai_backend_gives_the_hf_backends_answers(checkpoint, generator, hf_run, tmp_path):
    with StandInServer(generator) as server:
        assert _openai(checkpoint, tmp_path, [server.url], "pope,mme,scienceqa", "--concurrency", "4",
                       "--parity", "5", "--batch_size", "4") == 0  # fmt: skip
    for key in ("pope", "mme", "scienceqa"):
        assert _texts(tmp_path, key) == _texts(hf_run, key)
    summary = json.loads((tmp_path / "results.json").read_text())
    reference = json.loads((hf_run / "results.json").read_text())
    assert summary["results"] == reference["results"]
    assert summary["backend"] == {"name": "openai", "base_urls": [server.url], "served_model": str(checkpoint),
                                  "concurrency": 4}  # fmt: skip
    assert reference["backend"] == {"name": "hf", "batch_size": 4} and summary["batch_size"] == 4
    assert summary["dtype"] == "float16"
    pope = summary["parity"]["pope"]
    assert pope["n"] == 5 and pope["agreement"] == 100.0 and pope["differing"] == []
    assert pope["score"]["openai"] == pope["score"]["hf"]
    assert summary["parity"]["scienceqa"]["n"] == 3  # the benchmark has 3 questions
    # Every question was one request, answered once.
    assert sum(server.requests.values()) == sum(server.answered.values()) == POPE_QUESTIONS + 6 + 3
    # An hf run never resumes into this folder's answers.
    with pytest.raises(ValueError, match="holds answers of the openai backend, not hf"):
        _eval(checkpoint, tmp_path)


@pytest.mark.slow
def test_the_key_goes_only_into_the_authorization_header(checkpoint, generator, tmp_path, monkeypatch, capsys):
    secret = "sk-test-not-a-real-key-456"
    monkeypatch.setenv("SERVE_KEY", secret)
    with StandInServer(generator, faults=[{"status": 503}]) as server:
        assert _openai(checkpoint, tmp_path, [server.url], "pope", "--api_key_env", "SERVE_KEY") == 0
    assert server.authorizations == {f"Bearer {secret}": POPE_QUESTIONS + 1}  # the retry too
    written = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    captured = capsys.readouterr()
    assert secret not in written + captured.out + captured.err


@pytest.mark.slow
def test_failing_server_every_question_answered_once(checkpoint, generator, hf_run, tmp_path):
    """503s, malformed bodies, dropped connections and 500s on a third of the requests: all retried, the answers are
    the HF backend's, each question is in the answer file once and was answered by the server once."""
    faults = [{"status": 503}, None, {"malformed": True}, None, {"close": True}, {"status": 500}, None] * 3
    with StandInServer(generator, faults=faults) as failing, StandInServer(generator) as healthy:
        assert _openai(checkpoint, tmp_path, [failing.url, healthy.url], "pope", "--concurrency", "3",
                       "--max_retries", "3") == 0  # fmt: skip
    assert _texts(tmp_path) == _texts(hf_run)
    assert len({r["question_id"] for r in read_jsonl(tmp_path / "pope" / "answers.jsonl")}) == POPE_QUESTIONS
    assert sum(failing.answered.values()) + sum(healthy.answered.values()) == POPE_QUESTIONS
    assert sum(failing.answered.values()) > 0 and sum(healthy.answered.values()) > 0  # spread over both
    assert sum(failing.requests.values()) > sum(failing.answered.values())  # the faults happened


@pytest.mark.slow
def test_client_error_stops_with_one_line_and_the_run_resumes(checkpoint, generator, hf_run, tmp_path, capsys):
    faults = [None] * 5 + [{"status": 400}]
    with StandInServer(generator, faults=faults) as server:
        assert _openai(checkpoint, tmp_path, [server.url], "pope", "--concurrency", "1") == 1
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: pope: {server.url} could not answer question 20000002 (HTTP 400 ")
    assert error.endswith("after 1 attempt; the answers received so far are kept: rerun to resume")
    assert sum(server.requests.values()) == 6  # a 400 is not retried
    kept = read_jsonl(tmp_path / "pope" / "answers.part0.jsonl")
    assert [r["question_id"] for r in kept] == [1, 2, 3, 4, 20000001]
    with StandInServer(generator) as healthy:
        assert _openai(checkpoint, tmp_path, [healthy.url], "pope") == 0
    assert sum(healthy.requests.values()) == POPE_QUESTIONS - 5  # only the unanswered questions
    assert _texts(tmp_path) == _texts(hf_run)


@pytest.mark.parametrize(
    ("faults", "flags", "reason"),
    [
        (None, [], "unreachable (ConnectionRefusedError"),
        ([{"malformed": True}] * 10, [], "malformed response"),
        ([{"status": 503}] * 10, [], "HTTP 503"),
        ([{"sleep": 1.5}] * 10, ["--request_timeout", "0.3"], "no response within 0.3 s"),
    ],
)
def test_transient_failures_are_retried_then_named(checkpoint, generator, tmp_path, capsys, faults, flags, reason):
    if faults is None:
        url, server = f"http://127.0.0.1:{_closed_port()}/v1", None
    else:
        server = StandInServer(generator, faults=faults).__enter__()
        url = server.url
    try:
        code = _openai(checkpoint, tmp_path, [url], "pope", "--concurrency", "1", "--max_retries", "1", *flags)
    finally:
        if server is not None:
            server.__exit__()
    assert code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: pope: {url} could not answer question 1 ({reason}")
    assert "after 2 attempts; the answers received so far are kept" in line
    if server is not None:
        assert sum(server.requests.values()) == 2  # the first try and one retry, then the run stops


def test_unknown_url_scheme_and_no_url_are_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="needs at least one --base_url"):
        _eval(checkpoint, tmp_path, "pope", "--backend", "openai")
    with pytest.raises(ValueError, match="'localhost:8000' is not an http"):
        OpenAIBackend(["localhost:8000"], "m")
    with pytest.raises(ValueError, match="must not carry credentials"):
        OpenAIBackend(["http://user:sk-secret@localhost:8000/v1"], "m")
