"""The smoke recipe end to end: `recipes/sft.py` in one and two processes, resume, outputs, `hub-llava render-sample`."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from accelerate_runs import launch
from datasets import Dataset
from PIL import Image
from recipe_runs import run_in_process
from safetensors.torch import load_file
from transformers import AutoProcessor, LlavaForConditionalGeneration
from trl import DatasetMixtureConfig, ScriptArguments, TrlParser

from hub_llava import cli
from hub_llava.data.schema import BASE_FEATURES
from hub_llava.hub import push_model
from hub_llava.processing import chat_template
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.data import BadRowError

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"

pytestmark = pytest.mark.slow


def run_recipe(tiny_dir, output_dir, *overrides):
    """Runs `recipes/sft.py`'s `main` in this process, with the smoke YAML plus `overrides`."""
    run_in_process(SMOKE, tiny_dir, output_dir, *overrides)
    return output_dir


def weights(folder):
    return load_file(os.path.join(folder, "model.safetensors"))


def test_smoke_recipe_trains_llm_and_projector_not_vision_and_output_loads(tiny_dir, tmp_path):
    out = run_recipe(tiny_dir, tmp_path / "sft")
    before, after = weights(tiny_dir), weights(out)
    assert before.keys() == after.keys()
    vision = [k for k in before if "vision_tower" in k]
    trained = [k for k in before if "vision_tower" not in k]  # LLM (embeddings, layers, norms, lm_head) + projector
    assert vision and any("multi_modal_projector" in k for k in trained) and any("lm_head" in k for k in trained)
    assert all(torch.equal(before[k], after[k]) for k in vision)
    assert [k for k in trained if torch.equal(before[k], after[k])] == []

    state = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 8 and len(losses) == 8 and all(math.isfinite(x) for x in losses)

    model = LlavaForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.chat_template == chat_template() and processor.image_processor.do_pad
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id == 2
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is the box?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.endswith("USER: <image>\nWhat color is the box? ASSISTANT:")
    inputs = processor(
        images=Image.new("RGB", (40, 30), "red"), text=prompt, add_special_tokens=False, return_tensors="pt"
    )
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    card = (out / "README.md").read_text()
    assert "recipes/tiny/sft/config_smoke.yaml" in card and "mm_projector_lr" in card
    push = push_model(out, "hub_llava/tiny-llava-sft", dry_run=True)  # the publisher's card + checkpoint checks
    assert "model.safetensors" in push.files and "README.md" in push.files and "training_args.bin" not in push.files
    assert "tokenizer.model" in push.files

    # `hub-llava eval` on the output sees the stream the run trained on, and it is LLaVA's.
    from llava_reference import IMAGE_TOKEN_INDEX, SlowLlamaTokenizer, inference_ids

    from hub_llava.eval.generation import Generator
    from hub_llava.token_stream import TokenStream
    from hub_llava.training.collator import row_ids

    trained_on = TokenStream.from_processor(AutoProcessor.from_pretrained(tiny_dir))
    evaluated = Generator(model, processor).stream
    assert evaluated.legacy is trained_on.legacy is False and evaluated.sp_model_file.startswith(str(out))
    row = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet"))[1]
    assert row_ids(evaluated, row["messages"], 1, 4) == row_ids(trained_on, row["messages"], 1, 4)
    slow = SlowLlamaTokenizer(out / "tokenizer.model", legacy=False)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    expected = [image_id if t == IMAGE_TOKEN_INDEX else t for t in inference_ids("What color is the box?", slow)]
    assert Generator(model, processor).prompt_ids("What color is the box?", has_image=True) == expected


def test_resume_ends_where_an_uninterrupted_run_ends(tiny_dir, tmp_path, caplog):
    checkpoints = ["--save_strategy", "steps", "--save_steps", "4"]
    full = run_recipe(tiny_dir, tmp_path / "full", *checkpoints)
    caplog.clear()
    resumed = run_recipe(tiny_dir, tmp_path / "resumed", "--resume_from_checkpoint", str(full / "checkpoint-4"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Resuming from")]
    assert lines == ["Resuming from checkpoint-4 (step 4 of 8)"]
    # train_loss is the whole run's mean (8 steps), as the uninterrupted run reports it, not the last 4 steps'.
    full_loss = json.loads((full / "all_results.json").read_text())["train_loss"]
    resumed_loss = json.loads((resumed / "all_results.json").read_text())["train_loss"]
    losses = [e["loss"] for e in json.loads((full / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert abs(resumed_loss - full_loss) < 1e-4 and abs(resumed_loss - sum(losses[4:]) / 4) > 1e-3
    expected, got = weights(full), weights(resumed)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
    assert json.loads((resumed / "trainer_state.json").read_text())["global_step"] == 8
    checkpoint = full / "checkpoint-4"  # an intermediate checkpoint is evaluated on the stream it was trained on
    assert (checkpoint / "tokenizer.model").is_file()
    assert json.loads((checkpoint / "tokenizer_config.json").read_text())["slow_tokenizer_legacy"] is False


def test_two_process_gloo_run_with_text_only_rows(tiny_dir, tmp_path):
    out = tmp_path / "ddp"
    run = launch(out, "--model_name_or_path", tiny_dir)  # accelerate launch --multi_gpu --num_processes 2
    assert run.returncode == 0, run.tail()
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 16 // (2 * 2)  # two processes x per-device batch 2
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert LlavaForConditionalGeneration.from_pretrained(out).config.image_seq_length == 4


def test_render_sample_cli_shows_answer_and_eos_spans_only(tiny_dir, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the smoke recipe names its data relative to the repo root
    argv = ["render-sample", "--config", str(SMOKE), "--index", "1", "--model_name_or_path", tiny_dir]
    assert cli.main(argv) == 0
    sample = json.loads(capsys.readouterr().out)
    assert sample["trained_spans"] == ["The box is green.</s>", "No.</s>"]
    assert sample["text"].endswith(
        "USER: <image>\nWhat color is the box? ASSISTANT: The box is green.</s>"
        "USER: Is there a cat in the image? ASSISTANT: No.</s>"
    )
    assert sample["n_image_tokens"] == 4 and sample["n_tokens"] == 80


def test_render_sample_ids_show_llavas_stream(tiny_dir, capsys, monkeypatch):
    """`--ids`: LLaVA's stream side by side, as its own preprocess_v1 prints it (BOS + "▁A ▁chat", the image as one
    -200, the lone "▁" after it, labels only on the answers and their </s>), checked by the independent reference."""
    from llava_reference import SlowLlamaTokenizer, preprocess_v1

    monkeypatch.chdir(REPO)
    argv = ["render-sample", "--config", str(SMOKE), "--index", "1", "--model_name_or_path", tiny_dir, "--ids"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "position\tid\tpiece\tlabel"
    rows = [line.split("\t") for line in lines[1:]]
    pieces = [json.loads(row[2]) for row in rows]
    assert pieces[:3] == ["<s>", "▁A", "▁chat"]
    image = next(i for i, row in enumerate(rows) if row[1] == "-200")
    assert pieces[image] == "<image> (x4)" and pieces[image + 1 : image + 3] == ["▁", "<0x0A>"]
    row = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet"))[1]
    ids, labels = preprocess_v1(row["messages"], True, SlowLlamaTokenizer(Path(tiny_dir) / "tokenizer.model", False))
    assert [int(r[1]) for r in rows] == ids and [int(r[3]) for r in rows] == labels


def test_render_sample_renders_a_gpu_recipe_on_this_cpu_machine(tiny_dir, tmp_path, capsys, monkeypatch):
    """The 7B recipe asks for bf16 + tf32, which TrainingArguments refuses on a CPU at parse time; render-sample only
    needs the processor, so it renders anyway. The recipe is copied with its model, vision tower and data lines
    pointed at local stand-ins (nothing can be downloaded here); every other line is the shipped one."""
    from hub_llava.convert import synthetic as syn

    monkeypatch.chdir(REPO)
    shipped = REPO / "recipes" / "llava-1.5-7b" / "sft" / "config_lvis_instruct4v_nodetail_mix619k.yaml"
    clip = syn.write_clip(tmp_path / "clip", syn.clip_config(32))
    stand_ins = {
        "model_name_or_path": tiny_dir,
        "vision_tower_name_or_path": str(clip),
        "dataset_name": str(REPO / "samples" / "sft_smoke"),
        "dataset_config": None,
    }
    lines = []
    for line in shipped.read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in stand_ins:
            line = f"{key}: {stand_ins[key]}" if stand_ins[key] else ""
        lines.append(line)
    recipe = tmp_path / "config_7b_local.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    assert "bf16: true" in recipe.read_text() and "tf32: true" in recipe.read_text()
    with pytest.raises(ValueError):  # what parsing it with the trainer's own settings does on this machine
        TrlParser((ScriptArguments, LlavaSFTConfig, LlavaModelConfig, DatasetMixtureConfig)).parse_args_and_config(
            ["--config", str(recipe)]
        )
    assert cli.main(["render-sample", "--config", str(recipe), "--index", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["trained_spans"] == ["The box is green.</s>", "No.</s>"]


def test_render_sample_cli_names_a_bad_index(tiny_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="--index 99 is out of range: the training split has 16 rows"):
        cli.main(["render-sample", "--config", str(SMOKE), "--index", "99", "--model_name_or_path", tiny_dir])


def test_recipe_stops_on_a_bad_row_naming_it(tiny_dir, tmp_path):
    rows = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet")).to_list()
    rows[5]["messages"][0]["content"] = "<image>\n" + rows[5]["messages"][0]["content"]
    data = tmp_path / "data"
    data.mkdir()
    Dataset.from_list(rows, features=BASE_FEATURES).to_parquet(str(data / "train.parquet"))
    with pytest.raises(BadRowError, match=r"row 5 \(id 'img005'\) has a stray <image> in message 0"):
        run_recipe(tiny_dir, tmp_path / "out", "--dataset_name", str(data))


def test_stage1_plain_template_trains_only_the_projector(tiny_dir, tmp_path):
    samples = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet"))
    with pytest.raises(BadRowError, match=r"row 1 \(id 'img001'\) has 4 messages; the plain \(stage-1\) template"):
        run_recipe(tiny_dir, tmp_path / "rounds", "--llava_template", "plain")
    data = tmp_path / "captions"
    data.mkdir()
    one_round = samples.map(lambda row: {"messages": row["messages"][:2]})
    one_round.to_parquet(str(data / "train.parquet"))
    with pytest.raises(BadRowError, match=r"row 12 \(id 'txt000'\) has no image; the plain \(stage-1\) template"):
        run_recipe(tiny_dir, tmp_path / "refused", "--dataset_name", str(data), "--llava_template", "plain")
    one_round.filter(lambda row: len(row["images"]) > 0).to_parquet(str(data / "train.parquet"))
    out = run_recipe(
        tiny_dir,
        tmp_path / "pretrain",
        "--dataset_name",
        str(data),
        "--llava_template",
        "plain",
        "--image_aspect_ratio",
        "square",
        "--train_projector_only",
        "true",
        "--learning_rate",
        "1e-3",
    )
    before, after = weights(tiny_dir), weights(out)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == [f"multi_modal_projector.linear_{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]
    processor = AutoProcessor.from_pretrained(out)
    assert processor.chat_template == chat_template("plain")
    assert processor.image_processor.do_pad is False  # stage 1: CLIP resize + centre crop only (LLaVA's pretrain.sh)
    assert "| image_aspect_ratio | square |" in (out / "README.md").read_text()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from test_hub_standin import installed  # the project's Hub stand-in: huggingface_hub's HTTP, mocked

    yield from installed(monkeypatch, tmp_path)


def test_push_to_hub_publishes_once_through_hub_llava(hub, tiny_dir, tmp_path):
    # Trainer's own push (a commit per checkpoint, pickles included) is off; hub_llava.hub publishes once at the end.
    out = run_recipe(
        tiny_dir, tmp_path / "sft", "--push_to_hub", "--hub_model_id", "hub_llava/tiny-sft", "--max_steps", "2"
    )
    commits = hub.commits_of("hub_llava/tiny-sft")
    # repo creation, the data, then the card: nothing per checkpoint
    assert [c.added for c in commits][0] == [".gitattributes"] and len(commits) == 3
    assert "model.safetensors" in commits[1].added and commits[2].added == ["README.md"]
    files = hub.files("hub_llava/tiny-sft")
    assert "model.safetensors" in files and "README.md" in files and "training_args.bin" not in files
    assert not any(name.startswith("checkpoint-") for name in files)
    pushed = LlavaForConditionalGeneration.from_pretrained(hub.tree("hub_llava/tiny-sft"))
    local = LlavaForConditionalGeneration.from_pretrained(out)
    assert torch.equal(pushed.lm_head.weight, local.lm_head.weight)


def test_the_card_states_only_what_the_checkpoint_is(tiny_dir, tmp_path):
    """The tiny model's card used to claim CLIP ViT-L/14-336 and Vicuna v1.5, name `tiny-llava-sft` in its quick start
    and a local path as its data. Now: parts described from the config with counted parameters, the quick start loads
    the folder (and the pushed repo once pushed), the data by its Hub id and where it was read from."""
    from huggingface_hub import ModelCard

    staged = tmp_path / "staged"
    staged.mkdir()
    rows = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet"))
    rows.to_parquet(str(staged / "train.parquet"))
    (staged / "README.md").write_text(
        '# x\n\n```python\nds = load_dataset("hub_llava/sft_smoke", split="train")\n```\n'
    )
    out = run_recipe(tiny_dir, tmp_path / "sft", "--dataset_name", str(staged), "--max_steps", "1")
    text = (out / "README.md").read_text()
    assert "ViT-L/14-336" not in text and "Vicuna" not in text  # a 2-layer, 32-wide random model is neither
    assert "clip_vision_model vision transformer, 2 layers, hidden size 32, 28 px images in 14 px patches" in text
    model = LlavaForConditionalGeneration.from_pretrained(out)
    vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    assert "| vision tower | " in text and f"| {vision / 1e3:.1f}K |".replace(".0K", "K") in text
    assert f'model_id = "{out}"' in text  # the quick start loads what exists
    card = ModelCard(text)
    assert card.data.datasets == ["hub_llava/sft_smoke"] and card.data.base_model is None  # the base is local
    assert f"`hub_llava/sft_smoke`, read from the local copy `{staged}`" in text
    push = push_model(out, "hub_llava/tiny-llava-sft", dry_run=True)
    assert 'model_id = "hub_llava/tiny-llava-sft"' in push.card and f'model_id = "{out}"' not in push.card


def test_a_stage_1_card_says_stage_1(tiny_dir, tmp_path):
    data = tmp_path / "captions"
    data.mkdir()
    rows = Dataset.from_parquet(str(REPO / "samples" / "sft_smoke" / "train.parquet"))
    rows = rows.filter(lambda row: len(row["images"]) > 0).map(lambda row: {"messages": row["messages"][:2]})
    rows.to_parquet(str(data / "train.parquet"))
    out = run_recipe(tiny_dir, tmp_path / "stage1", "--dataset_name", str(data), "--llava_template", "plain",
                     "--image_aspect_ratio", "square", "--train_projector_only", "true", "--max_steps", "1")  # fmt: skip
    text = (out / "README.md").read_text()
    assert "LLaVA-1.5 stage 1 (feature alignment)" in text and "only the projector was trained" in text
    assert "Fine-tuned" not in text
