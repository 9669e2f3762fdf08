"""The model card of every checkpoint hub_llava writes (converted, trained or published).

`render_model_card(...)` fills `model_cards/model_card.md.jinja`: YAML front matter (license, base_model, datasets,
pipeline_tag, tags from `huggingface_hub.ModelCardData`; a model-index grouped per dataset AND source), a quick start,
optional conversion / training sections, a results table (published beside measured), framework versions and
citations. Published results enter the model-index attributed to their authors (`source` name + url); measured
results enter it through the `EvalResult`s the caller passes (`hub_llava.eval.results.to_eval_results`).
"""

from collections import defaultdict
from dataclasses import dataclass

from huggingface_hub import EvalResult, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index
from huggingface_hub.utils import yaml_dump

from hub_llava import cards, env

TASK = "image-text-to-text"

# key -> (display name, Hub dataset, split, metric): the benchmark keys of briefs/shared_contracts.md.
BENCHMARKS = {
    "vqav2": ("VQAv2", "lmms-lab/VQAv2", "test-dev", "accuracy"),
    "gqa": ("GQA", "lmms-lab/GQA", "testdev_balanced", "accuracy"),
    "vizwiz": ("VizWiz", "lmms-lab/VizWiz-VQA", "test", "accuracy"),
    "scienceqa": ("ScienceQA-IMG", "lmms-lab/ScienceQA", "test", "accuracy"),
    "textvqa": ("TextVQA", "lmms-lab/textvqa", "validation", "accuracy"),
    "pope": ("POPE", "lmms-lab/POPE", "test", "f1"),
    "mme": ("MME-Perception", "lmms-lab/MME", "test", "perception_score"),
    "mme_cognition": ("MME-Cognition", "lmms-lab/MME", "test", "cognition_score"),
    "mmbench": ("MMBench", "lmms-lab/MMBench", "dev", "circular_accuracy"),
    "mmbench_cn": ("MMBench-CN", "lmms-lab/MMBench_CN", "dev", "circular_accuracy"),
    "seed": ("SEED-Bench", "lmms-lab/SEED-Bench", "test", "accuracy"),
    "llava_bench": ("LLaVA-Bench-in-the-Wild", "lmms-lab/llava-bench-in-the-wild", "test", "relative_score"),
    "mm_vet": ("MM-Vet", "lmms-lab/MMVet", "test", "gpt4_score"),
    "mmmu": ("MMMU", "MMMU/MMMU", "validation", "accuracy"),
}

LLAVA_CITATION = """@misc{liu2023improvedllava,
  title={Improved Baselines with Visual Instruction Tuning},
  author={Liu, Haotian and Li, Chunyuan and Li, Yuheng and Lee, Yong Jae},
  publisher={arXiv:2310.03744},
  year={2023}
}"""
# Model-index dataset names where one dataset holds several benchmarks (MME: perception and cognition totals).
DATASET_NAMES = {"lmms-lab/MME": "MME"}
DEFAULT_TAGS = ["llava", "llava-1.5", "vision-language", "hub_llava"]


@dataclass(frozen=True)
class PublishedResults:
    """Results published by a model's authors, carried in its card with attribution.

    Args:
        results (`dict[str, float]`):
            Benchmark key (see `BENCHMARKS`) -> headline score on the published scale.
        source_name (`str`):
            Who published them, e.g. `"LVIS-Instruct4V (Wang et al., 2023)"`.
        source_url (`str`):
            Where they were published.
        note (`str`, *optional*):
            A remark printed under the table (e.g. a correction by the authors).
    """

    results: dict[str, float]
    source_name: str
    source_url: str
    note: str | None = None

    def to_eval_results(self) -> list[EvalResult]:
        """The published scores as model-index entries attributed to their source."""
        entries = []
        for key, score in self.results.items():
            name, dataset, split, metric = _benchmark(key)
            entries.append(
                EvalResult(
                    task_type=TASK,
                    dataset_type=dataset,
                    dataset_name=DATASET_NAMES.get(dataset, name),
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=score,
                    metric_name=f"{name} (published)",
                    source_name=self.source_name,
                    source_url=self.source_url,
                )
            )
        return entries


def model_index(model_name: str, eval_results: list[EvalResult]) -> list[dict]:
    """The model-index of `eval_results`, one entry per dataset AND source.

    `huggingface_hub` groups results by dataset only and keeps the first result's `source` for the group, which would
    attribute our measured POPE to the authors of the published one (or the reverse). Grouping per source first keeps
    every figure with its own attribution; `ModelCard(...).data.eval_results` parses it back unchanged.
    """
    by_source = defaultdict(list)
    for result in eval_results:
        by_source[(result.source_name, result.source_url)].append(result)
    entries = [
        entry for group in by_source.values() for entry in eval_results_to_model_index(model_name, group)[0]["results"]
    ]
    return [{"name": model_name, "results": entries}]


def _benchmark(key: str) -> tuple[str, str, str, str]:
    if key not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark key {key!r}; expected one of {sorted(BENCHMARKS)}.")
    return BENCHMARKS[key]


def results_table(published: PublishedResults | None = None, measured: dict | None = None) -> list[dict]:
    """Rows `{"key", "name", "published", "measured"}` (None where missing), in the contract's benchmark order.

    `measured` is the content of a `results.json` written by `hub-llava eval` (its `"results"` mapping is read).
    """
    published_scores = published.results if published else {}
    measured_results = (measured or {}).get("results", {})
    keys = [key for key in BENCHMARKS if key in published_scores or key in measured_results]
    keys += sorted(key for key in measured_results if key not in BENCHMARKS)
    rows = []
    for key in keys:
        entry = measured_results.get(key)
        rows.append(
            {
                "key": key,
                "name": BENCHMARKS[key][0] if key in BENCHMARKS else entry.get("name", key),
                "published": published_scores.get(key),
                "measured": entry["score"] if entry else None,
            }
        )
    return rows


_CONVERSION_OPTIONAL = ("base", "verify", "image_token_id", "pad_token_id", "vocab_size")
# Shapes named in cards only as shapes ("the shape of CLIP ViT-L/14-336"): a config says how big a model is, not
# which weights it holds.
_VISION_SHAPES = {(1024, 24, 14, 336): "CLIP ViT-L/14-336", (1024, 24, 14, 224): "CLIP ViT-L/14"}
_LLM_SHAPES = {(4096, 32, 11008): "Llama-2-7B / Vicuna-7B", (5120, 40, 13824): "Llama-2-13B / Vicuna-13B"}


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}".replace(".0", "")
    return str(n)


def parameter_counts(folder) -> dict[str, int]:
    """Parameters per part (vision tower, projector, language model) from the shapes in a checkpoint's safetensors
    headers: what was saved, whatever trained it (a ZeRO-3 model's own tensors are partitioned)."""
    import json
    import struct
    from math import prod
    from pathlib import Path

    counts = {"vision tower": 0, "projector": 0, "language model": 0}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            part = (
                "vision tower" if "vision_tower" in name else "projector" if "multi_modal_projector" in name else None
            )
            counts[part or "language model"] += prod(info["shape"])
    return counts


def describe_architecture(config, counts: dict[str, int] | None = None) -> dict:
    """What a `LlavaConfig` says the model is, for the card: the vision tower, projector and language model, each
    from its own config (sizes, and a known shape's name as a shape only), with parameter counts when given."""
    vision, text = config.vision_config, config.get_text_config()
    select = "CLS dropped" if config.vision_feature_select_strategy == "default" else "CLS kept"
    tokens = (vision.image_size // vision.patch_size) ** 2 + (select == "CLS kept")
    shape = _VISION_SHAPES.get((vision.hidden_size, vision.num_hidden_layers, vision.patch_size, vision.image_size))
    llm = _LLM_SHAPES.get((text.hidden_size, text.num_hidden_layers, text.intermediate_size))
    parts = {
        "vision tower": (
            f"{vision.model_type} vision transformer, {vision.num_hidden_layers} layers, hidden size "
            f"{vision.hidden_size}, {vision.image_size} px images in {vision.patch_size} px patches: {tokens} image "
            f"tokens from layer {config.vision_feature_layer} ({select})"
            + (f"; the shape of {shape}" if shape else "")
        ),
        "projector": (
            f"Linear({vision.hidden_size} → {text.hidden_size}) – {config.projector_hidden_act.upper()} – "
            f"Linear({text.hidden_size} → {text.hidden_size})"
        ),
        "language model": (
            f"{text.model_type} decoder, {text.num_hidden_layers} layers, hidden size {text.hidden_size}, "
            f"{text.num_attention_heads} attention heads, vocabulary {text.vocab_size}"
            + (f"; the shape of {llm}" if llm else "")
        ),
    }
    rows = [{"part": part, "description": text_, "parameters": _count(counts[part]) if counts else None}
            for part, text_ in parts.items()]  # fmt: skip
    total = _count(sum(counts.values())) if counts else None
    return {"parts": rows, "total": total}


def _installed_versions() -> dict[str, str]:
    """`hub_llava.env.collect()` without what describes the machine rather than the software (token flag)."""
    return {
        name: version
        for name, version in env.collect().items()
        if version != "not installed" and name not in ("HF token set", "CUDA available")
    }


def render_model_card(
    model_name: str,
    *,
    model_id: str | None = None,
    description: str = "",
    license: str = "llama2",
    base_model: str | list[str] | None = None,
    datasets: list[str] | None = None,
    tags: list[str] | None = None,
    published: PublishedResults | None = None,
    measured: dict | None = None,
    measured_eval_results: list[EvalResult] | None = None,
    training: dict | None = None,
    conversion: dict | None = None,
    architecture: dict | None = None,
    lora: dict | None = None,
    citations: list[str] | None = None,
    framework_versions: dict[str, str] | None = None,
) -> str:
    """Renders the README.md of a LLaVA-1.5-style checkpoint.

    Args:
        model_name (`str`):
            Title of the card and name of the model-index entry.
        model_id (`str`, *optional*):
            Hub id (or path) used in the quick start; defaults to `model_name`.
        description (`str`, *optional*, defaults to `""`):
            Markdown paragraph under the title.
        license (`str`, *optional*, defaults to `"llama2"`):
            Hub license id (LLaVA-1.5 models inherit Llama 2's license through Vicuna v1.5).
        base_model (`str` or `list[str]`, *optional*):
            Hub id(s) this checkpoint derives from.
        datasets (`list[str]`, *optional*):
            Hub ids of the training datasets.
        tags (`list[str]`, *optional*):
            Extra tags, added to `DEFAULT_TAGS`.
        published (`PublishedResults`, *optional*):
            Results published by the authors: model-index entries with their source, and a table column.
        measured (`dict`, *optional*):
            A `results.json` from `hub-llava eval`: a table column beside the published one.
        measured_eval_results (`list[EvalResult]`, *optional*):
            Model-index entries for the measured results (from `hub_llava.eval.results.to_eval_results`).
        training (`dict`, *optional*):
            `{"data": markdown, "recipe": markdown, "hyperparameters": {name: value}}`, each optional.
        conversion (`dict`, *optional*):
            `{"source": id, "format": ..., "vision_tower": ..., "dtype": ...}` and optionally `"base"`, `"verify"`
            (`{"max_logit_diff", "max_pixel_diff"}`), `"image_token_id"`, `"pad_token_id"`, `"vocab_size"`, for
            checkpoints converted from the original LLaVA format.
        architecture (`dict`, *optional*):
            `describe_architecture(...)` of the checkpoint's config: what the card says the model is (nothing is
            claimed without it).
        lora (`dict`, *optional*):
            `{"adapter": bool, "description": markdown, "base": markdown}` for the outputs of a LoRA run: the
            adapter's folder (`adapter: true`: the quick start rebuilds the base and loads the adapter) or the merged
            model.
        citations (`list[str]`, *optional*):
            BibTeX entries cited besides LLaVA-1.5 (always cited).
        framework_versions (`dict[str, str]`, *optional*):
            Defaults to the installed packages of `hub_llava.env.collect()`.
    """
    eval_results = (published.to_eval_results() if published else []) + list(measured_eval_results or [])
    card_data = ModelCardData(
        license=license,
        base_model=base_model,
        datasets=datasets or None,
        pipeline_tag=TASK,
        library_name="transformers",
        tags=DEFAULT_TAGS + [tag for tag in tags or [] if tag not in DEFAULT_TAGS],
    )
    metadata = card_data.to_dict()
    if eval_results:
        metadata["model-index"] = model_index(model_name, eval_results)
    versions = framework_versions if framework_versions is not None else _installed_versions()
    return cards.render(
        "model_card.md.jinja",
        card_data=yaml_dump(metadata, sort_keys=False).strip(),
        model_name=model_name,
        model_id=model_id or model_name,
        description=description,
        conversion={**dict.fromkeys(_CONVERSION_OPTIONAL), **conversion} if conversion else None,
        training={"data": None, "recipe": None, "hyperparameters": None, **training} if training else None,
        architecture=architecture,
        lora=lora,
        rows=results_table(published, measured),
        published=published,
        measured=measured,
        citations=list(dict.fromkeys(c.strip() for c in [LLAVA_CITATION, *(citations or [])])),
        framework_versions=versions,
    )
