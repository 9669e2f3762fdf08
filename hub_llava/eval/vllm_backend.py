"""`--backend vllm`: vLLM's offline engine (`vllm.LLM`) on a converted or trained checkpoint (llava-hf layout).

The engine is fed OUR prompt token ids (`TokensPrompt`: `{"prompt_token_ids", "multi_modal_data": {"image"}}`), so
the token stream is LLaVA's (`hub_llava.token_stream`), not a template applied by vLLM. Each image stays ONE `<image>`
id: for a token prompt vLLM's multi-modal processor applies LLaVA's prompt update itself (it replaces each
`image_token_index` by the image's feature-size copies; `BaseMultiModalProcessor._apply_hf_processor_main` reports
token prompts as "updates not applied", vLLM 0.1x), so a pre-expanded prompt would be expanded again. The image is
padded to a square with LLaVA's CLIP mean colour before vLLM sees it (the checkpoint's processor then has nothing to
pad). Decoding is greedy (`temperature=0`), `max_tokens` the benchmark's `max_new_tokens`, the output stripped.

Parallelism: `--tensor_parallel_size T` shards one replica over T GPUs. Under `accelerate launch` / `torchrun` with
W processes, the engine runs with vLLM's `external_launcher` executor as W / T data-parallel replicas; each replica
answers its shard of the questions (as the HF backend's processes do) and the first rank of each writes them.

Not installable on CPU-only machines: it is an optional extra (`pip install hub_llava[vllm]`), imported only here.
"""

import os
from collections.abc import Iterator

from hub_llava.eval.backend import BackendError
from hub_llava.processing import chat_template

INSTALL = "pip install hub_llava[vllm]"


def token_prompt(stream, question: str, image) -> dict:
    """The `vllm.LLM.generate` input of one question: LLaVA's prompt ids (one `<image>` id) and the padded image."""
    from hub_llava.eval.docs import resolve_image
    from hub_llava.eval.generation import Generator
    from hub_llava.processing import expand_to_square

    ids = stream.prompt(Generator.messages(question, image is not None))
    if image is None:
        return {"prompt_token_ids": ids}
    pil = image.convert("RGB") if hasattr(image, "convert") else resolve_image(image)
    return {"prompt_token_ids": ids, "multi_modal_data": {"image": expand_to_square(pil)}}


def engine_arguments(model_path: str, dtype: str, tensor_parallel_size: int, world_size: int) -> dict:
    """`vllm.LLM` keyword arguments; several launched processes become data-parallel replicas (`external_launcher`)."""
    if world_size % tensor_parallel_size:
        raise BackendError(
            f"{world_size} processes cannot be split into replicas of --tensor_parallel_size {tensor_parallel_size}"
        )
    kwargs = {"model": model_path, "dtype": dtype, "tensor_parallel_size": tensor_parallel_size, "seed": 0,
              "limit_mm_per_prompt": {"image": 1}}  # fmt: skip
    if world_size > 1:
        kwargs.update(
            distributed_executor_backend="external_launcher", data_parallel_size=world_size // tensor_parallel_size
        )
    return kwargs


class VLLMBackend:
    """Answers with `vllm.LLM.generate`, `batch_size` questions per call (vLLM schedules them as one batch; answers
    are written after each call, so a resumed run loses at most one call's worth).

    Args:
        model_path (`str`): the checkpoint folder or Hub id.
        processor: the checkpoint's processor (LLaVA's prompt ids come from its `tokenizer.model`).
        dtype (`str`): `float16` (LLaVA's protocol), `bfloat16` or `float32`.
        batch_size (`int`, *optional*, defaults to `256`): questions per `LLM.generate` call.
        tensor_parallel_size (`int`, *optional*, defaults to `1`): GPUs per replica.
    """

    name = "vllm"

    def __init__(
        self, model_path: str, processor, *, dtype: str, batch_size: int = 256, tensor_parallel_size: int = 1
    ):
        try:
            import vllm
        except ImportError:
            raise BackendError(f"--backend vllm needs vLLM, which is not installed: {INSTALL}") from None
        from hub_llava.token_stream import TokenStream

        self.vllm, self.batch_size, self.tensor_parallel_size = vllm, batch_size, tensor_parallel_size
        self.stream = TokenStream.from_processor(processor, chat_template("vicuna_v1"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.llm = vllm.LLM(**engine_arguments(model_path, dtype, tensor_parallel_size, world_size))
        parallel = self.llm.llm_engine.vllm_config.parallel_config
        self.shard_index = parallel.data_parallel_rank if world_size > 1 else 0
        self.num_shards = parallel.data_parallel_size if world_size > 1 else 1
        self.writes = int(os.environ.get("RANK", "0")) % tensor_parallel_size == 0

    def describe(self) -> dict:
        return {
            "name": self.name,
            "vllm_version": self.vllm.__version__,
            "tensor_parallel_size": self.tensor_parallel_size,
        }

    def close(self) -> None:
        """Shuts the engine down and frees its GPU memory (the HF reference of `--parity` loads next)."""
        import gc

        import torch

        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def answer(self, requests: list[dict], generation_kwargs: dict) -> Iterator[tuple[int, str]]:
        params = self.vllm.SamplingParams(temperature=0.0, max_tokens=generation_kwargs["max_new_tokens"])
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            prompts = [token_prompt(self.stream, r["text"], r["image"]) for r in batch]
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            yield from enumerate((output.outputs[0].text.strip() for output in outputs), start)
