"""The answering backends of `hub-llava eval` behind one interface: `hf` (transformers' `generate`, the default),
`vllm` (vLLM's offline engine) and `openai` (any OpenAI-compatible chat-completions server).

A backend answers a list of requests `{"question_id", "text", "image"}` (`text` is the question as the model is asked
it, after the benchmark's pre/post prompt; `image` a path, a PIL image or None) and yields `(index, answer)` pairs
as answers arrive, in any order. The runner (`hub_llava.eval.run`) owns everything else (resume, part files, the
progress bar, answer files, results.json), so those are identical across backends.

Each backend also says which shard of the questions this process answers (`shard_index`, `num_shards`) and whether
it writes them (`writes`: with vLLM tensor parallelism, every rank of a group computes the same answers and only the
first writes them), describes itself for results.json (`describe()`) and releases what it holds (`close()`).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

from hub_llava.errors import UserError

BACKENDS = ("hf", "vllm", "openai")


class BackendError(UserError, RuntimeError):
    """A failure the user can act on (a server that keeps failing, a missing optional dependency): the CLI prints it
    as one `error:` line; answers written before it are kept and a rerun resumes."""


@dataclass
class BackendConfig:
    """How to answer, as chosen on the command line.

    Args:
        name (`str`, *optional*, defaults to `"hf"`): one of `hf`, `vllm`, `openai`.
        base_urls (`list[str]`, *optional*): the servers of the `openai` backend (e.g. `http://host:8000/v1`).
        concurrency (`int`, *optional*, defaults to `8`): requests in flight at once (`openai`).
        tensor_parallel_size (`int`, *optional*, defaults to `1`): GPUs per model replica (`vllm`).
        served_model_name (`str`, *optional*): the model name sent to the servers (default: `--model`).
        request_timeout (`float`, *optional*, defaults to `600`): seconds per request (`openai`).
        max_retries (`int`, *optional*, defaults to `4`): rounds of retries over all servers (`openai`).
        backoff (`float`, *optional*, defaults to `1.0`): first wait in seconds after a round failed, doubled each round.
        api_key_env (`str`, *optional*, defaults to `"OPENAI_API_KEY"`): environment variable with the servers' key.
    """

    name: str = "hf"
    base_urls: list[str] = field(default_factory=list)
    concurrency: int = 8
    tensor_parallel_size: int = 1
    served_model_name: str | None = None
    request_timeout: float = 600.0
    max_retries: int = 4
    backoff: float = 1.0
    api_key_env: str = "OPENAI_API_KEY"

    def __post_init__(self):
        if self.name not in BACKENDS:
            raise ValueError(f"Unknown backend {self.name!r}; choose one of {', '.join(BACKENDS)}.")
        if self.name == "openai" and not self.base_urls:
            raise ValueError("--backend openai needs at least one --base_url (e.g. http://localhost:8000/v1).")


class HFBackend:
    """transformers' `generate` through `hub_llava.eval.generation.Generator`, `batch_size` questions at a time.

    `lockstep`: for a model whose weights are sharded over the processes (ZeRO-3), where every module's forward
    gathers its weights from all ranks, so all ranks must run the same modules in the same order. Every process then
    calls `generate` as many times as the busiest one (transformers' `generate` adds `synced_gpus` under ZeRO-3 for
    the decoding steps within one call), and when some rank's batch has an image, every rank's has one (`generate`
    runs the vision tower before the prompt's forward then; a text-only batch runs it inside, through the zero image
    of `hub_llava.training.model.add_zero_image_hook`). A filler question, whose answer is dropped, makes up both."""

    name = "hf"

    def __init__(self, generator, batch_size: int = 1, lockstep: bool = False):
        from accelerate import PartialState

        state = PartialState()
        self.generator, self.batch_size, self.lockstep = generator, batch_size, lockstep
        self.shard_index, self.num_shards, self.writes = state.process_index, state.num_processes, True

    def answer(self, requests: list[dict], generation_kwargs: dict) -> Iterator[tuple[int, str]]:
        n_batches = -(-len(requests) // self.batch_size)
        if self.lockstep:
            from accelerate.utils import gather_object

            n_batches = max(gather_object([n_batches]))
        for start in range(0, n_batches * self.batch_size, self.batch_size):
            batch = requests[start : start + self.batch_size]
            answered = len(batch)
            if self.lockstep:
                batch = batch + _filler(batch)
            texts = self.generator.generate([r["text"] for r in batch], [r["image"] for r in batch], generation_kwargs)
            yield from enumerate(texts[:answered], start)

    def describe(self) -> dict:
        return {"name": self.name, "batch_size": self.batch_size}

    def close(self) -> None:
        pass  # the model belongs to the caller


def _filler(batch: list[dict]) -> list[dict]:
    """The question a lockstep process adds to its batch (collectively: every process calls it): one with a blank
    image when another rank's batch has an image and this one's none, one without an image when this batch is empty
    and no rank has an image; else none."""
    from accelerate.utils import gather_object
    from PIL import Image

    has_image = any(r["image"] is not None for r in batch)
    anyone = any(gather_object([has_image]))
    if anyone and not has_image:
        return [{"text": "Is there a cat in the image?", "image": Image.new("RGB", (32, 32), "white")}]
    return [] if batch else [{"text": "Is there a cat?", "image": None}]


def load_backend(config: BackendConfig, model_path: str, dtype: str, batch_size: int, model=None, processor=None,
                 lockstep: bool = False):  # fmt: skip
    """Builds the backend of `config`. `batch_size` is the questions per `generate` call (`hf`) or per
    `LLM.generate` call (`vllm`; `openai` has `concurrency` instead). `model` / `processor` are the loaded HF model
    and processor (the `hf` backend needs both, `vllm` the processor for LLaVA's prompt ids); vLLM is imported only
    here, when chosen. `lockstep`: see `HFBackend` (a model sharded over the processes, ZeRO-3)."""
    if config.name == "hf":
        from hub_llava.eval.generation import Generator

        return HFBackend(Generator(model, processor), batch_size, lockstep)
    if config.name == "vllm":
        from hub_llava.eval.vllm_backend import VLLMBackend

        return VLLMBackend(
            model_path, processor, dtype=dtype, batch_size=batch_size,
            tensor_parallel_size=config.tensor_parallel_size,
        )  # fmt: skip
    from hub_llava.eval.openai_backend import OpenAIBackend

    return OpenAIBackend(
        config.base_urls, config.served_model_name or model_path, concurrency=config.concurrency,
        timeout=config.request_timeout, max_retries=config.max_retries, backoff=config.backoff,
        api_key_env=config.api_key_env,
    )  # fmt: skip


def add_arguments(parser) -> None:
    """The `hub-llava eval` flags that choose and configure the backend."""
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS, default="hf",
                       help="hf: transformers' generate (default); vllm: vLLM's offline engine (pip install "
                       "hub_llava[vllm]); openai: OpenAI-compatible servers (--base_url).")  # fmt: skip
    group.add_argument("--base_url", action="append", default=[], dest="base_urls",
                       help="An OpenAI-compatible server, e.g. http://localhost:8000/v1 (repeat to spread the "
                       "questions over several).")  # fmt: skip
    group.add_argument("--concurrency", type=int, default=8, help="openai: requests in flight at once (default 8).")
    group.add_argument("--served_model_name", help="openai: the model name the servers serve (default: --model).")
    group.add_argument("--request_timeout", type=float, default=600.0, help="openai: seconds per request.")
    group.add_argument("--max_retries", type=int, default=4, help="openai: rounds of retries over all servers.")
    group.add_argument("--api_key_env", default="OPENAI_API_KEY", help="openai: environment variable with the key.")
    group.add_argument("--tensor_parallel_size", type=int, default=1, help="vllm: GPUs per model replica.")


def config_from_args(args) -> BackendConfig:
    return BackendConfig(
        args.backend, base_urls=args.base_urls, concurrency=args.concurrency, served_model_name=args.served_model_name,
        request_timeout=args.request_timeout, max_retries=args.max_retries, api_key_env=args.api_key_env,
        tensor_parallel_size=args.tensor_parallel_size,
    )  # fmt: skip
