"""The vllm backend without vLLM (not installable on CPU machines): its inputs are LLaVA's token ids, one `<image>`
id per image (vLLM expands it), the padded image; without vLLM, `--backend vllm` is one error line."""

from pathlib import Path

import pytest
from PIL import Image

from hub_llava.cli import main
from hub_llava.eval.backend import BackendError
from hub_llava.eval.vllm_backend import engine_arguments, token_prompt
from hub_llava.testing import tiny_llava, tiny_processor
from hub_llava.token_stream import TokenStream

SAMPLES = Path(__file__).parent.parent / "samples" / "eval"


def test_token_prompt_is_llavas_ids_with_one_image_id(tmp_path):
    from llava_reference import IMAGE_TOKEN_INDEX, SlowLlamaTokenizer, inference_ids
    from transformers import AutoProcessor

    processor = tiny_processor()
    processor.save_pretrained(tmp_path)
    TokenStream.from_processor(processor).save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    stream = TokenStream.from_processor(processor)
    question = "Is there a cat?  Answer the question using a single word or phrase."
    prompt = token_prompt(stream, question, Image.new("RGB", (30, 20), (9, 200, 9)))
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    slow = SlowLlamaTokenizer(tmp_path / "tokenizer.model", legacy=False)
    expected = [image_id if t == IMAGE_TOKEN_INDEX else t for t in inference_ids(question, slow, has_image=True)]
    assert prompt["prompt_token_ids"] == expected and expected.count(image_id) == 1  # vLLM expands it itself
    image = prompt["multi_modal_data"]["image"]
    assert image.size == (30, 30) and image.getpixel((0, 0)) == (122, 116, 104)  # padded as LLaVA pads
    text_only = token_prompt(stream, "Why?", None)
    assert set(text_only) == {"prompt_token_ids"} and image_id not in text_only["prompt_token_ids"]


def test_engine_arguments_single_and_data_parallel():
    single = engine_arguments("ckpt", "float16", 1, 1)
    assert single == {"model": "ckpt", "dtype": "float16", "tensor_parallel_size": 1, "seed": 0,
                      "limit_mm_per_prompt": {"image": 1}}  # fmt: skip
    launched = engine_arguments("ckpt", "bfloat16", 2, 8)  # 8 processes, 2 GPUs per replica: 4 replicas
    assert launched["distributed_executor_backend"] == "external_launcher" and launched["data_parallel_size"] == 4
    with pytest.raises(BackendError, match="3 processes cannot be split into replicas of --tensor_parallel_size 2"):
        engine_arguments("ckpt", "float16", 2, 3)


def test_without_vllm_the_backend_is_one_error_line(tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    processor = tiny_processor()
    tiny_llava(processor.tokenizer).save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    code = main(["eval", "--model", str(tmp_path / "tiny"), "--benchmarks", "pope", "--data_dir", str(SAMPLES),
                 "--output_dir", str(tmp_path / "out"), "--backend", "vllm"])  # fmt: skip
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --backend vllm needs vLLM, which is not installed: pip install hub_llava[vllm]"
    )
