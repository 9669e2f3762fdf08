"""Every recipe YAML parses with the pinned TRL (unknown keys fail), says what it reproduces, carries LLaVA-1.5's
hyperparameters and names data that one of our dataset scripts builds; every accelerate config loads; the recipes
README names only files that exist."""

import functools
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").rglob("config_*.yaml"))
ACCELERATE = sorted((REPO / "recipes" / "accelerate_configs").glob("*.yaml"))
GPUS = 8


def parse(path, *overrides):
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig))
    # bf16 / tf32 are checked against this CPU machine's hardware at parse time: switch them off for parsing only.
    return parser.parse_args_and_config(
        ["--config", str(REPO / path), "--bf16", "false", "--tf32", "false", *overrides]
    )


def raw(path):
    return yaml.safe_load((REPO / path).read_text())


def test_catalogue_is_complete():
    expected = {
        f"recipes/llava-1.5-7b/sft/config_{mix}{variant}.yaml"
        for mix in ("llava_mix665k", "lvis_instruct4v_nodetail_mix619k", "lvis_instruct4v_mix880k", "svit_mix_665k")
        for variant in ("", "_lora")
    }
    expected |= {
        "recipes/llava-1.5-7b/sft/config_lvis_instruct4v_nodetail_mix619k_qlora.yaml",
        "recipes/llava-1.5-13b/sft/config_svit_mix_665k_lora.yaml",
        "recipes/llava-1.5-7b/pretrain/config_lcs558k.yaml",
        "recipes/llava-1.5-13b/pretrain/config_lcs558k.yaml",
        "recipes/tiny/sft/config_smoke.yaml",
    }
    assert expected <= set(RECIPES)
    assert len([r for r in RECIPES if "13b/sft" in r]) >= 4


@pytest.mark.parametrize("path", RECIPES)
def test_recipe_parses_and_opens_with_what_it_reproduces(path):
    script_args, training_args, model_args, _ = parse(path)
    assert model_args.model_name_or_path and script_args.dataset_name
    header = (REPO / path).read_text().split("\n\n", 1)[0]
    assert header.startswith("# ") and "Hardware" in header and "Expected" in header
    assert f"--config {path}" in header
    for config in re.findall(r"--config_file (\S+)", header):
        assert (REPO / config).is_file(), config


@pytest.mark.parametrize("path", RECIPES)
def test_image_aspect_ratio_is_llavas_for_the_stage(path):
    """Stage 1 (LLaVA's pretrain.sh) leaves images unpadded; stage 2 (finetune.sh) pads them to a square."""
    _, training_args, _, _ = parse(path)
    expected = "square" if "/pretrain/" in path else "pad"
    assert raw(path)["image_aspect_ratio"] == training_args.image_aspect_ratio == expected
    assert (training_args.llava_template == "plain") == ("/pretrain/" in path)


def test_unknown_key_fails(tmp_path):
    recipe = tmp_path / "config_typo.yaml"
    recipe.write_text((REPO / "recipes/tiny/sft/config_smoke.yaml").read_text() + "warmup_ratio: 0.03\n")
    with pytest.raises(ValueError, match="Unknown arguments from config file: \\['--warmup_ratio'"):
        parse(recipe)


@pytest.mark.parametrize("path", [r for r in RECIPES if "/sft/" in r and "tiny" not in r])
def test_stage2_hyperparameters_are_llava_15(path):
    _, args, model_args, _ = parse(path)
    config = raw(path)
    assert config["bf16"] is True and config["tf32"] is True
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS == 128
    assert args.num_train_epochs == 1 and args.lr_scheduler_type == "cosine" and args.warmup_steps == 0.03
    assert args.weight_decay == 0.0 and args.max_grad_norm == 0.0 and args.max_length == 2048
    assert args.assistant_only_loss and args.gradient_checkpointing and args.group_by_modality_length
    assert args.llava_template == "vicuna_v1" and not args.train_projector_only
    assert model_args.vision_tower_name_or_path == "openai/clip-vit-large-patch14-336"
    if model_args.use_peft:
        assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (128, 256, 0.05)
        assert args.learning_rate == 2e-4 and args.mm_projector_lr == 2e-5 and model_args.lora_projector
        assert model_args.lora_target_modules is None  # the LLM-only regex, never CLIP
        assert model_args.merge_lora  # the run also leaves output_dir/merged, a full checkpoint
    else:
        assert args.learning_rate == 2e-5 and args.mm_projector_lr is None
    assert model_args.load_in_4bit == path.endswith("_qlora.yaml")


@pytest.mark.parametrize("path", [r for r in RECIPES if "/pretrain/" in r and "tiny" not in r])
def test_stage1_hyperparameters_are_llava_15(path):
    _, args, model_args, _ = parse(path)
    assert args.train_projector_only and args.llava_template == "plain"
    assert (
        args.learning_rate == 1e-3
        and args.per_device_train_batch_size * args.gradient_accumulation_steps * GPUS == 256
    )
    assert model_args.mm_projector_path is None
    assert "accelerate_configs/zero2.yaml" in (REPO / path).read_text()


@functools.cache
def built_datasets() -> dict[str, tuple[frozenset[str], str | None]]:
    """Hub repo id -> (config names, default config) of every `dataset_scripts/*.py`, from the builder it runs."""
    built = {}
    for script in sorted((REPO / "dataset_scripts").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"script_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        configs = frozenset(config.name for config in module.BUILDER.BUILDER_CONFIGS)
        built[module.DEFAULT_REPO_ID] = (configs, module.BUILDER.DEFAULT_CONFIG_NAME)
    return built


def data_problems(recipe: dict) -> list[str]:
    """What is wrong with the data a recipe names (`dataset_name` / `dataset_config`, or each `datasets:` entry)."""
    entries = [(d["path"], d.get("name")) for d in recipe["datasets"]] if recipe.get("datasets") else []
    entries = entries or [(recipe.get("dataset_name"), recipe.get("dataset_config"))]
    problems, built = [], built_datasets()
    for name, config in entries:
        if not str(name).startswith("hub_llava/"):
            if not (REPO / str(name)).is_dir():
                problems.append(f"dataset {name} is neither one of ours nor a folder in the repo")
        elif name not in built:
            problems.append(f"no dataset script builds {name}")
        elif (config or built[name][1]) not in built[name][0]:
            problems.append(f"{name} has no config {config!r} (it has {sorted(built[name][0])})")
    return problems


def test_the_walk_sees_every_dataset_script():
    assert built_datasets() == {
        "hub_llava/lvis_instruct4v": (
            frozenset({"lvis_instruct4v", "mix730k", "nodetail_mix619k", "mix880k"}),
            "lvis_instruct4v",
        ),
        "hub_llava/svit": (
            frozenset(
                {"conversation", "complex_reasoning", "detail_description", "referring_qa", "core_150k", "mix_665k"}
            ),
            "mix_665k",
        ),
        "hub_llava/llava_v1_5": (frozenset({"mix665k", "llava_instruct_150k"}), "mix665k"),
        "hub_llava/llava_pretrain": (frozenset({"lcs558k"}), "lcs558k"),
    }


@pytest.mark.parametrize("path", RECIPES)
def test_recipe_data_is_a_dataset_we_build(path):
    assert data_problems(raw(path)) == []


def test_the_walk_names_data_nobody_builds():
    assert data_problems({"dataset_name": "hub_llava/llava_v1_5_mix665k"}) == [
        "no dataset script builds hub_llava/llava_v1_5_mix665k"
    ]
    assert data_problems({"dataset_name": "hub_llava/llava_v1_5", "dataset_config": "mix666k"}) == [
        "hub_llava/llava_v1_5 has no config 'mix666k' (it has ['llava_instruct_150k', 'mix665k'])"
    ]
    mixture = {"datasets": [{"path": "hub_llava/svit", "name": "mix_665k"}, {"path": "samples/nope"}]}
    assert data_problems(mixture) == ["dataset samples/nope is neither one of ours nor a folder in the repo"]
    assert data_problems({"dataset_name": "hub_llava/llava_pretrain"}) == []  # the default config


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_loads_for_an_8_gpu_node(path):
    config = load_config_from_file(str(path))
    assert config.num_processes == GPUS and config.num_machines == 1 and config.mixed_precision == "bf16"
    assert (
        config.distributed_type.value
        == {"ddp.yaml": "MULTI_GPU", "zero2.yaml": "DEEPSPEED", "zero3.yaml": "DEEPSPEED", "fsdp.yaml": "FSDP"}[
            path.name
        ]
    )
    if config.distributed_type.value == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


def test_readme_names_only_files_that_exist():
    readme = (REPO / "recipes" / "README.md").read_text()
    paths = set(
        re.findall(
            r"(?<![\w/])((?:recipes|samples|hub_llava|tests|bench)/[\w./-]+\.(?:yaml|py|md|jinja|parquet))", readme
        )
    )
    assert paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing
