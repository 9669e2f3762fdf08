"""`recipes/sft.py` run in the test's own process, as `python recipes/sft.py --config ...` runs it (the in-process
counterpart of `accelerate_runs.launch`): fast, and the trainer's internals can be observed or patched."""

import importlib.util
from pathlib import Path

from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
SMOKE_DATA = REPO / "samples" / "sft_smoke"


def recipe_parser() -> TrlParser:
    """The recipe's own parser (`recipes/sft.py cli`)."""
    return TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig), allow_abbrev=False)


def run_in_process(config, tiny_dir, output_dir, *overrides) -> tuple:
    """Runs the recipe `config` on the smoke data with the tiny model into `output_dir`, `overrides` (flags) last.

    Returns:
        The parsed `(script_args, training_args, model_args, mixture)`.
    """
    spec = importlib.util.spec_from_file_location("sft_recipe", REPO / "recipes" / "sft.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = ["--config", str(config), "--model_name_or_path", str(tiny_dir), "--output_dir", str(output_dir)]
    parsed = recipe_parser().parse_args_and_config([*argv, "--dataset_name", str(SMOKE_DATA), *overrides])
    recipe.main(*parsed, recipe=str(config))
    return parsed
