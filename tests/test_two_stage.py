"""Stage 1 -> stage 2 as `make demo` runs it: the tiny model's projector trained on the staged LCS-558K sample
(`recipes/tiny/pretrain/config_smoke.yaml`), then handed to stage 2 with `mm_projector_path`, as our recipes say."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.model import load_model, load_processor
from hub_llava.training.tiny_model import make_tiny_model

REPO = Path(__file__).resolve().parents[1]
STAGE1 = REPO / "recipes" / "tiny" / "pretrain" / "config_smoke.yaml"
STAGE2 = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
PROJECTOR = [f"multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]

pytestmark = pytest.mark.slow


def parse(config, *argv):
    parser = TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig))
    return parser.parse_args_and_config(["--config", str(config), *map(str, argv)])


def run_recipe(config, *argv):
    spec = importlib.util.spec_from_file_location("sft_recipe", REPO / "recipes" / "sft.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    recipe.main(*parse(config, *argv), recipe=str(config))


def projector(weights: dict) -> dict:
    return {key: weights[key] for key in PROJECTOR}


def distance(a: dict, b: dict) -> float:
    return math.sqrt(sum(float((a[k] - b[k]).pow(2).sum()) for k in PROJECTOR))


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """The tiny model, the staged LCS-558K sample and stage 1 trained on it (10 epochs: the projector moves far)."""
    work = tmp_path_factory.mktemp("two_stage")
    tiny = make_tiny_model(str(work / "tiny-llava"))
    spec = importlib.util.spec_from_file_location("pretrain_script", REPO / "dataset_scripts" / "llava_pretrain.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    samples = REPO / "samples" / "llava_pretrain"
    data = work / "datasets" / "llava_pretrain"
    assert (
        script.main(["--raw_dir", str(samples), "--image_root", str(samples / "images"), "--output_dir", str(data)])
        == 0
    )
    stage1 = work / "tiny-llava-pretrain"
    run_recipe(
        STAGE1,
        "--model_name_or_path",
        tiny,
        "--dataset_name",
        data / "repo",
        "--output_dir",
        stage1,
        "--num_train_epochs",
        10,
    )
    return {"work": work, "tiny": Path(tiny), "stage1": stage1}


def test_stage1_trains_the_projector_only(stages):
    before, after = load_file(stages["tiny"] / "model.safetensors"), load_file(stages["stage1"] / "model.safetensors")
    assert before.keys() == after.keys()
    assert sorted(k for k in before if not torch.equal(before[k], after[k])) == PROJECTOR
    state = json.loads((stages["stage1"] / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 20 == len(losses)  # 8 rows / batch 4 x 10 epochs
    assert all(math.isfinite(x) for x in losses)
    card = (stages["stage1"] / "README.md").read_text()  # its data: the Hub id, the config, the local copy, the rows
    assert "`hub_llava/llava_pretrain` (config `lcs558k`), read from the local copy" in card and ": 8 rows" in card


def test_stage2_starts_from_the_stage1_projector_not_a_fresh_one(stages):
    # What recipes/sft.py builds before training: the stage-2 model with `mm_projector_path` = the stage-1 folder.
    _, training_args, model_args, _ = parse(
        STAGE2, "--model_name_or_path", stages["tiny"], "--mm_projector_path", stages["stage1"]
    )
    model = load_model(model_args, load_processor(model_args, training_args))
    start = {f"multi_modal_projector.{k}": v for k, v in model.model.multi_modal_projector.state_dict().items()}
    stage1 = projector(load_file(stages["stage1"] / "model.safetensors"))
    fresh = projector(load_file(stages["tiny"] / "model.safetensors"))
    assert all(torch.equal(start[k], stage1[k]) for k in PROJECTOR)
    assert distance(stage1, fresh) > 0.1  # stage 1 moved it well away from the initialisation it started from

    # And the real stage-2 run: two steps later its projector is still next to stage 1's, far from the fresh one.
    out = stages["work"] / "tiny-llava-sft"
    run_recipe(
        STAGE2, "--model_name_or_path", stages["tiny"], "--mm_projector_path", stages["stage1"],
        "--dataset_name", REPO / "samples" / "sft_smoke", "--output_dir", out, "--max_steps", 2,
    )  # fmt: skip
    stage2 = projector(load_file(out / "model.safetensors"))
    assert distance(stage2, stage1) < 0.25 * distance(stage1, fresh)
    assert not all(torch.equal(stage2[k], stage1[k]) for k in PROJECTOR)  # stage 2 trains the projector too
