"""LoRA outputs that load: the adapter, its base record and rebuild, and the merged checkpoint (`merge_lora`).

The merged model's logits are compared with the adapter's on its rebuilt base (`PeftModel.from_pretrained`) and, for
the stage-2 base built from components, with the model still in the trainer's memory: the base rebuilt from its
record is the one the adapter was trained on.
"""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from accelerate_runs import launch
from datasets import Dataset
from peft import PeftModel
from PIL import Image
from recipe_runs import run_in_process
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor, CLIPVisionModel, LlamaForCausalLM, LlavaForConditionalGeneration

from hub_llava import cli
from hub_llava.eval.generation import Generator
from hub_llava.hub import push_model
from hub_llava.hub_checks import split_card
from hub_llava.testing import tiny_llava, tiny_tokenizer
from hub_llava.training.collator import build_collator
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.lora import BASE_RECORD, merge_adapter, read_base_record, rebuild_base, write_base_record
from hub_llava.training.model import freeze, load_model, load_processor, lora_config
from hub_llava.training.outputs import lora_section, save_outputs
from hub_llava.training.trainer import LlavaSFTTrainer

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
SAMPLES = REPO / "samples" / "sft_smoke"
LORA = ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0.0"]

pytestmark = pytest.mark.slow


def run_recipe(tiny_dir, output_dir, *overrides):
    """`recipes/sft.py`'s `main` in this process: the smoke YAML plus `overrides`."""
    run_in_process(SMOKE, tiny_dir, output_dir, *overrides)
    return output_dir


@pytest.fixture(scope="module")
def lora_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "out"
    return run_recipe(tiny_dir, out, *LORA, "--merge_lora", "true", "--save_strategy", "steps", "--save_steps", "4")


def inputs(processor):
    """Two forwards: a row with an image, a text-only row (LLaVA's two kinds of batch)."""

    def prompt(content):
        return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    image = Image.new("RGB", (40, 30), (200, 30, 30))
    with_image = prompt([{"type": "image"}, {"type": "text", "text": "What color is the bus?"}])
    text_only = prompt([{"type": "text", "text": "Describe the image in detail."}])
    return [
        processor(images=image, text=with_image, add_special_tokens=False, return_tensors="pt"),
        processor(text=text_only, add_special_tokens=False, return_tensors="pt"),
    ]


@torch.no_grad()
def logits(model, batches):
    return [model(**batch).logits for batch in batches]


def assert_logits_equal(got, expected, atol=1e-5):
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=atol)


def test_lora_run_leaves_adapter_and_merged_checkpoint_with_equal_logits(lora_run, tiny_dir):
    out, merged = lora_run, lora_run / "merged"
    assert {"adapter_config.json", "adapter_model.safetensors", BASE_RECORD, "tokenizer.model", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    model = LlavaForConditionalGeneration.from_pretrained(merged)
    processor = AutoProcessor.from_pretrained(merged)
    assert (merged / "tokenizer.model").is_file() and (merged / "generation_config.json").is_file()
    assert model.generation_config.eos_token_id == processor.tokenizer.eos_token_id == 2
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())

    batches = inputs(processor)
    adapter = PeftModel.from_pretrained(rebuild_base(out), out).eval()
    merged_logits = logits(model.eval(), batches)
    assert_logits_equal(merged_logits, logits(adapter, batches))
    # The run trained something: the merged model is not its base (the equality above is not 0 == 0).
    base_logits = logits(LlavaForConditionalGeneration.from_pretrained(tiny_dir).eval(), batches)
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(merged_logits, base_logits))
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as f:
        assert any("multi_modal_projector" in key for key in f.keys())  # the projector, trained fully


def test_an_intermediate_checkpoint_of_a_lora_run_merges_too(lora_run, tmp_path):
    checkpoint = lora_run / "checkpoint-4"
    assert read_base_record(checkpoint) == read_base_record(lora_run)
    merged = merge_adapter(str(checkpoint), str(tmp_path / "merged-4"))
    processor = AutoProcessor.from_pretrained(merged)
    batches = inputs(processor)
    adapter = PeftModel.from_pretrained(rebuild_base(checkpoint), checkpoint).eval()
    merged_logits = logits(LlavaForConditionalGeneration.from_pretrained(merged).eval(), batches)
    assert_logits_equal(merged_logits, logits(adapter, batches))
    final = logits(LlavaForConditionalGeneration.from_pretrained(lora_run / "merged").eval(), batches)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(merged_logits, final))  # step 4 is not the end


def test_merged_checkpoint_is_what_eval_and_push_take(lora_run, tmp_path):
    merged = lora_run / "merged"
    model, processor = LlavaForConditionalGeneration.from_pretrained(merged), AutoProcessor.from_pretrained(merged)
    assert Generator(model, processor).stream.sp_model_file.startswith(str(merged))  # LLaVA's stream, from merged/
    argv = ["eval", "--model", str(merged), "--benchmarks", "pope", "--data_dir", str(REPO / "samples" / "eval")]
    assert cli.main([*argv, "--output_dir", str(tmp_path / "eval"), "--max_new_tokens", "2", "--limit", "2"]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["results"]["pope"]["n"] == 2

    push = push_model(merged, "hub_llava/tiny-llava-lora", dry_run=True)
    assert {"model.safetensors", "config.json", "tokenizer.model", "processor_config.json", "README.md"} <= set(
        push.files
    )
    adapter_push = push_model(lora_run, "hub_llava/tiny-llava-lora-adapter", dry_run=True)
    assert "adapter_model.safetensors" in adapter_push.files and BASE_RECORD in adapter_push.files
    assert not any(file.startswith("merged/") for file in adapter_push.files)  # published on its own


def test_cards_say_what_each_folder_holds_from_its_config(lora_run, tiny_dir):
    merged = lora_run / "merged"
    config = LlavaForConditionalGeneration.from_pretrained(merged).config
    metadata, card = split_card((merged / "README.md").read_text(), "merged")
    assert "LlavaForConditionalGeneration.from_pretrained(model_id" in card and "## LoRA" in card
    assert "r 4, alpha 8" in card and "merged into its base" in card and f"the Llava checkpoint `{tiny_dir}`" in card
    assert f"vocabulary {config.text_config.vocab_size}" in card  # the architecture table, from the merged config
    assert f"{config.text_config.num_hidden_layers} layers" in card and "| total |" in card
    assert "quantisation error" not in card  # not a QLoRA run
    assert metadata["library_name"] == "transformers"

    _, adapter_card = split_card((lora_run / "README.md").read_text(), "adapter")
    assert "PEFT LoRA adapter" in adapter_card and "PeftModel.from_pretrained(rebuild_base(model_id), model_id)" in (
        adapter_card
    )
    assert (
        "`merged/` beside it" in adapter_card and "LlavaForConditionalGeneration.from_pretrained" not in adapter_card
    )
    record = read_base_record(lora_run)
    assert record["model_name_or_path"] == tiny_dir and record["added_tokens"] == {}
    assert record["vocab_size"] == record["llm_vocab_size"] == config.text_config.vocab_size


def test_merge_lora_on_a_run_without_lora_is_ignored_with_a_log_line(tiny_dir, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hub_llava"):
        out = run_recipe(tiny_dir, tmp_path / "full", "--merge_lora", "true", "--max_steps", "1")
    assert any(
        r.getMessage().startswith("merge_lora ignored: the run trained no LoRA adapter") for r in caplog.records
    )
    assert (out / "model.safetensors").is_file() and not (out / "merged").exists()
    assert not (out / BASE_RECORD).exists()


def test_qlora_merge_rebuilds_the_base_unquantised_in_the_runs_dtype(lora_run, tmp_path):
    """QLoRA's merge path: the recorded base had `load_in_4bit` (bitsandbytes is not installed here, so the adapter
    comes from a LoRA run); the merge reloads it unquantised in the run's dtype and never touches 4-bit weights."""
    folder = tmp_path / "qlora"
    shutil.copytree(lora_run, folder, ignore=shutil.ignore_patterns("merged"))
    record = {**read_base_record(folder), "load_in_4bit": True, "dtype": "bfloat16"}
    write_base_record(folder, record)
    base = rebuild_base(folder)
    assert base.dtype == torch.bfloat16 and getattr(base, "hf_quantizer", None) is None
    assert not any("4bit" in type(m).__name__ for m in base.modules())
    merged = Path(merge_adapter(str(folder)))
    assert merged == folder / "merged"
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config and config["text_config"]["dtype"] == "bfloat16"
    with safe_open(str(merged / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(key).dtype for key in f.keys()} == {torch.bfloat16}
    model = LlavaForConditionalGeneration.from_pretrained(merged).eval()
    batches = inputs(AutoProcessor.from_pretrained(merged))
    adapter = PeftModel.from_pretrained(rebuild_base(folder, dtype="float32"), folder).eval()
    assert_logits_equal(logits(model.float(), batches), logits(adapter, batches), atol=0.05)  # bf16 rounding
    description = lora_section(LlavaModelConfig(model_name_or_path="x", lora_r=4, lora_alpha=8), record, False, True)
    assert "reloaded unquantised in `bfloat16`" in description["description"] and "QLoRA" in description["base"]


@pytest.mark.parametrize(
    "weight, error",
    [
        # PEFT only warns about a LoRA weight it cannot place: the merge would silently keep the base's weight.
        ("layers.0.mlp.down_proj.lora_B.weight", "not loaded .*down_prox.lora_B.weight"),
        # ... and fails with a bare KeyError for a projector (modules_to_save) weight missing from the file.
        ("multi_modal_projector.linear_1.weight", "no 'base_model.model.model.multi_modal_projector.linear_1.weight'"),
    ],
)
def test_an_adapter_that_does_not_fit_its_base_is_an_error_naming_the_weight(lora_run, tmp_path, weight, error):
    folder = tmp_path / "renamed"
    shutil.copytree(lora_run, folder, ignore=shutil.ignore_patterns("merged"))
    weights = load_file(folder / "adapter_model.safetensors")
    key = next(k for k in weights if k.endswith(weight))
    weights[key.replace("down_proj", "down_prox").replace("multi_modal_projector", "projector")] = weights.pop(key)
    save_file(weights, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"adapter_model.safetensors does not fit the rebuilt base: {error}"):
        merge_adapter(str(folder))


def test_rebuild_base_refuses_a_folder_without_a_record(tiny_dir):
    with pytest.raises(ValueError, match="no base_model.json: not the output folder of a hub_llava LoRA run"):
        rebuild_base(tiny_dir)


@pytest.fixture
def components(tmp_path):
    """Vicuna-like LLM (no `<image>`/`<pad>`), CLIP and an original `mm_projector.bin`, as stage 2 starts from."""
    tokenizer = tiny_tokenizer(llava_tokens=False)
    reference = tiny_llava(tiny_tokenizer())
    text_config = reference.config.text_config
    text_config.vocab_size, text_config.pad_token_id = len(tokenizer), 0
    torch.manual_seed(1)
    LlamaForCausalLM(text_config).save_pretrained(tmp_path / "vicuna")
    tokenizer.save_pretrained(tmp_path / "vicuna")
    CLIPVisionModel(reference.config.vision_config).save_pretrained(tmp_path / "clip")
    projector = {f"model.mm_projector.{i}.{p}": torch.randn(32, 32) if p == "weight" else torch.randn(32)
                 for i in (0, 2) for p in ("weight", "bias")}  # fmt: skip
    torch.save(projector, tmp_path / "mm_projector.bin")
    return tmp_path


def test_components_base_rebuilds_exactly_and_the_merge_equals_the_trained_model(components, tmp_path):
    model_args = LlavaModelConfig(
        model_name_or_path=str(components / "vicuna"),
        vision_tower_name_or_path=str(components / "clip"),
        mm_projector_path=str(components / "mm_projector.bin"),
        dtype="float32",
        use_peft=True,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        merge_lora=True,
    )
    args = LlavaSFTConfig(
        output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, report_to="none", per_device_train_batch_size=2,
        activation_checkpointing=False, max_steps=2, learning_rate=1e-2, save_strategy="no",
    )  # fmt: skip
    processor = load_processor(model_args, args)
    model = load_model(model_args, processor)
    freeze(model)
    trainer = LlavaSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_parquet(str(SAMPLES / "train.parquet")),
        processing_class=processor,
        data_collator=build_collator(processor, args),
        peft_config=lora_config(model_args),
    )
    trainer.train()
    out = Path(save_outputs(trainer, model_args, ["samples/sft_smoke"], None, 16)).parent
    assert out == tmp_path / "out"

    # Rebuilding twice gives the same weights (transformers' own mean_resizing samples new rows at random).
    first, second = rebuild_base(out), rebuild_base(out)
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(a, second.state_dict()[k]) for k, a in first.state_dict().items())
    # The 2 added tokens + padding to 640 rows: every new row is the mean of the LLM's 600 rows.
    llm = LlamaForCausalLM.from_pretrained(components / "vicuna")
    for new, old in ((first.get_input_embeddings(), llm.get_input_embeddings()), (first.lm_head, llm.lm_head)):
        assert new.weight.shape[0] == 640 and torch.equal(new.weight[:600], old.weight)
        expected = old.weight.double().mean(dim=0).float().expand(40, -1)
        torch.testing.assert_close(new.weight[600:], expected, rtol=0, atol=1e-7)

    # The merged checkpoint, the adapter on the rebuilt base and the model trained (in memory) agree.
    batches = inputs(processor)
    trained = logits(trainer.model.eval(), batches)
    merged = LlavaForConditionalGeneration.from_pretrained(out / "merged").eval()
    assert_logits_equal(logits(merged, batches), trained)
    assert_logits_equal(logits(PeftModel.from_pretrained(first, out).eval(), batches), trained)

    _, card = split_card((out / "README.md").read_text(), "adapter")
    record = read_base_record(out)
    assert record["added_tokens"] == {"<image>": 600, "<pad>": 601} and record["llm_vocab_size"] == 600
    for text in (
        f"the LLM `{components / 'vicuna'}`",
        f"the vision tower `{components / 'clip'}`",
        f"the stage-1 projector `{components / 'mm_projector.bin'}`",
        "`<image>` (id 600) and `<pad>` (id 601) added to the LLM's 600-token vocabulary, padded to 640 rows",
        "rebuild_base(folder)",
    ):
        assert text in card, text


@pytest.mark.parametrize("config", [None, "zero3.yaml"], ids=["ddp", "zero3"])  # the LoRA recipes' launchers
def test_two_process_lora_run_saves_the_whole_adapter_and_merges_on_the_main_process(tiny_dir, tmp_path, config):
    """2 CPU processes (gloo DDP, or `recipes/accelerate_configs/zero3.yaml`). Under ZeRO-3 `Trainer.save_model`
    gathers the adapter's partitioned weights before PEFT saves them; the merge then runs from the files, on the main
    process alone."""
    out = tmp_path / "run"
    run = launch(out, "--model_name_or_path", tiny_dir, *LORA, "--merge_lora", "true", config=config)
    assert run.returncode == 0, run.tail()
    assert run.log.count("Merged the LoRA adapter of") == 1  # the main process only
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as f:
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    assert shapes["base_model.model.model.multi_modal_projector.linear_1.weight"] == (32, 32)  # gathered, not (0,)
    assert len(shapes) == 2 * 7 * 2 + 4 and all(0 not in shape for shape in shapes.values())  # A, B x 14 + projector
    model = LlavaForConditionalGeneration.from_pretrained(out / "merged").eval()
    batches = inputs(AutoProcessor.from_pretrained(out / "merged"))
    adapter = PeftModel.from_pretrained(rebuild_base(out), out).eval()
    assert_logits_equal(logits(model, batches), logits(adapter, batches))
