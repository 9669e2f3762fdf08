"""End-to-end conversions of tiny checkpoints written in the ORIGINAL LLaVA layouts (full .bin, sharded safetensors,
LoRA + non_lora_trainables.bin, stage-1 projector), checked against an independent reference forward."""

import json

import pytest
import torch
from huggingface_hub import ModelCard
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from transformers import AutoConfig, AutoProcessor, LlamaForCausalLM, LlavaForConditionalGeneration

from hub_llava.cli import main as cli_main
from hub_llava.convert import source
from hub_llava.convert import synthetic as syn
from hub_llava.convert.converter import convert_checkpoint
from hub_llava.convert.verify import reference_logits, sample_image, verify
from hub_llava.processing import SYSTEM_PROMPT

HIDDEN, VISION_HIDDEN = 32, 24
VOCAB = 400  # the sentencepiece tokenizer's size (Vicuna: 32000)
IMAGE = sample_image(64, 40)  # non-square: padding matters
QUESTION = "What is shown in this image?"


def _write_llm(folder, seed, *, shards=1, fmt="bin", extra=None):
    llm = syn.llm_config(VOCAB, HIDDEN)
    specs = {**syn.llm_tensors(llm), **(extra or {})}
    syn.write_weights(folder, specs, shards=shards, fmt=fmt, seed=seed)
    syn.write_llama_tokenizer(folder, VOCAB)
    return llm


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A CLIP checkpoint, a base Vicuna and the four original layouts over them."""
    root = tmp_path_factory.mktemp("original")
    clip = syn.clip_config(VISION_HIDDEN)
    syn.write_clip(root / "clip", clip, seed=1)
    projector = syn.projector_tensors(VISION_HIDDEN, HIDDEN)

    # Full checkpoint, one pytorch_model.bin, CLIP weights saved inside (different values from the CLIP folder).
    inside = syn.clip_vision_tensors(clip, prefix="model.vision_tower.vision_tower.")
    llm = _write_llm(root / "full_bin", seed=2, extra={**projector, **inside})
    syn.write_config(root / "full_bin", syn.original_config(llm, str(root / "clip"), VISION_HIDDEN))

    # Full checkpoint, sharded safetensors with an index, CLIP from mm_vision_tower.
    llm = _write_llm(root / "full_st", seed=3, shards=3, fmt="safetensors", extra=projector)
    syn.write_config(root / "full_st", syn.original_config(llm, str(root / "clip"), VISION_HIDDEN))

    # Base Vicuna (LlamaForCausalLM layout, sharded .bin with an index).
    base_config = _write_llm(root / "vicuna", seed=4, shards=2)
    base_config.save_pretrained(root / "vicuna")

    # LoRA: a real PEFT adapter on the base (B made non-zero), + non_lora_trainables.bin + LLaVA's config.json.
    base = LlamaForCausalLM.from_pretrained(root / "vicuna", dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.05))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.save_pretrained(root / "lora", safe_serialization=False)
    trainables = syn.write_weights(root / "lora", projector, fmt="bin", seed=5, name="non_lora_trainables")[0]
    state = torch.load(trainables, weights_only=True)
    torch.save({f"base_model.model.{k}": v for k, v in state.items()}, trainables)
    syn.write_config(root / "lora", syn.original_config(base_config, str(root / "clip"), VISION_HIDDEN))

    # Stage 1: mm_projector.bin only, over the base.
    syn.write_weights(root / "stage1", projector, fmt="bin", seed=6, name="mm_projector")
    syn.write_config(root / "stage1", syn.original_config(base_config, str(root / "clip"), VISION_HIDDEN))
    return root


def _logits(folder, image=IMAGE, input_ids=None):
    processor = AutoProcessor.from_pretrained(folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=input_ids, pixel_values=inputs["pixel_values"]).logits, model


def _assert_matches_reference(world, name, out, base=None):
    checkpoint = source.open_checkpoint(str(world / name), base=str(world / base) if base else None)
    ids, _, reference = reference_logits(checkpoint, world / "clip", IMAGE, QUESTION)
    n_image = reference.shape[1] - (len(ids) - 1)
    config = json.loads((out / "config.json").read_text())
    expanded = [t for i in ids for t in ([config["image_token_index"]] * n_image if i == -200 else [i])]
    logits, model = _logits(out, input_ids=torch.tensor([expanded]))
    assert n_image == 4  # (28 / 14)^2 patches, CLS dropped
    torch.testing.assert_close(logits[..., : reference.shape[-1]], reference, atol=1e-4, rtol=0)
    return model


@pytest.mark.slow
def test_full_bin_with_clip_inside_matches_reference(world, tmp_path):
    out, report = convert_checkpoint(str(world / "full_bin"), tmp_path / "out", dtype="float32")
    assert report is None
    model = _assert_matches_reference(world, "full_bin", out)
    # The CLIP weights saved in the checkpoint are used, not the (different) ones of the CLIP folder.
    inside = source.load_bin(world / "full_bin" / "pytorch_model.bin")
    key = "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
    torch.testing.assert_close(model.model.vision_tower.encoder.layers[0].mlp.fc1.weight, inside[key].float())


@pytest.mark.slow
def test_sharded_safetensors_matches_reference_and_vocabulary_is_padded(world, tmp_path):
    out, _ = convert_checkpoint(str(world / "full_st"), tmp_path / "out", dtype="float32")
    model = _assert_matches_reference(world, "full_st", out)
    tokenizer = AutoProcessor.from_pretrained(out).tokenizer
    original_vocab = VOCAB
    assert tokenizer.convert_tokens_to_ids("<image>") == original_vocab  # 32000 on Vicuna
    assert tokenizer.convert_tokens_to_ids("<pad>") == original_vocab + 1  # 32001 on Vicuna
    assert model.config.image_token_id == original_vocab
    assert model.config.text_config.pad_token_id == original_vocab + 1
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == model.config.text_config.vocab_size == 64 * -(-(original_vocab + 2) // 64)
    # New rows: transformers' mean initialisation (old mean, 1e-9 x covariance).
    mean = embeddings[:original_vocab].mean(0)
    torch.testing.assert_close(
        embeddings[original_vocab:], mean.expand_as(embeddings[original_vocab:]), atol=1e-3, rtol=0
    )


@pytest.mark.slow
def test_lora_checkpoint_is_merged_over_base(world, tmp_path):
    out, _ = convert_checkpoint(str(world / "lora"), tmp_path / "out", base=str(world / "vicuna"), dtype="float32")
    model = _assert_matches_reference(world, "lora", out, base="vicuna")
    base = LlamaForCausalLM.from_pretrained(world / "vicuna", dtype=torch.float32)
    merged_q = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(merged_q, base.model.layers[0].self_attn.q_proj.weight)  # the adapter was applied
    torch.testing.assert_close(model.lm_head.weight[: base.lm_head.weight.shape[0]], base.lm_head.weight)


@pytest.mark.slow
def test_stage1_projector_over_base_with_verify(world, tmp_path):
    out, report = convert_checkpoint(
        str(world / "stage1"), tmp_path / "out", base=str(world / "vicuna"), dtype="float32", verify=True
    )
    assert report.ok and report.max_logit_diff < 1e-4 and report.max_pixel_diff < 1e-6
    assert report.tokens_match  # the converted processor feeds the very ids LLaVA's tokenizer_image_token made
    _assert_matches_reference(world, "stage1", out, base="vicuna")
    card = (out / "README.md").read_text()
    assert "max logit difference" in card
    assert f"over the base model `{world / 'vicuna'}`" in card


@pytest.mark.slow
def test_float16_output_chat_template_generation_config_and_quick_start(world, tmp_path):
    out, _ = convert_checkpoint(str(world / "full_st"), tmp_path / "out")
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["do_sample"] is False and generation["eos_token_id"] == 2 and generation["num_beams"] == 1

    # The card's quick start, as a user runs it.
    processor = AutoProcessor.from_pretrained(out)
    model = LlavaForConditionalGeneration.from_pretrained(out, dtype="auto")
    assert model.dtype == torch.float16
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == f"<s>{SYSTEM_PROMPT} USER: <image>\n{QUESTION} ASSISTANT:"
    inputs = processor(images=IMAGE, text=prompt, add_special_tokens=False, return_tensors="pt")
    assert (inputs["input_ids"][0] == model.config.image_token_id).sum() == 4
    output = model.to(torch.float32).generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True), str)


def test_autoconfig_misreads_the_original_config_we_do_not(world):
    misread = AutoConfig.from_pretrained(world / "full_st")  # model_type "llava" -> a default-shaped LlavaConfig
    assert misread.model_type == "llava"
    assert misread.text_config.hidden_size == 4096 and misread.text_config.vocab_size == 32000
    from hub_llava.convert.build import llava_config, text_config, vision_config

    checkpoint = source.open_checkpoint(str(world / "full_st"))
    text = text_config(checkpoint.config)
    assert (text.hidden_size, text.num_hidden_layers, text.vocab_size) == (
        HIDDEN,
        2,
        VOCAB,
    )
    config = llava_config(checkpoint.config, vision_config(world / "clip"), image_token_id=7)
    assert config.vision_config.hidden_size == VISION_HIDDEN and config.vision_config.image_size == 28
    assert config.vision_feature_layer == -2 and config.vision_feature_select_strategy == "default"
    assert config.image_seq_length == 4 and config.image_token_id == 7


@pytest.mark.slow
def test_verify_fails_on_a_tampered_conversion(world, tmp_path):
    out, _ = convert_checkpoint(str(world / "full_st"), tmp_path / "out", dtype="float32")
    from safetensors.torch import load_file, save_file

    weights = load_file(out / "model.safetensors")
    key = next(k for k in weights if "multi_modal_projector" in k and k.endswith("linear_2.bias"))
    weights[key] = weights[key] + 0.01
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    report = verify(source.open_checkpoint(str(world / "full_st")), world / "clip", out, dtype="float32", image=IMAGE)
    assert not report.ok and report.max_logit_diff > 1e-3


@pytest.mark.slow
def test_cli_convert_with_verify(world, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["convert", str(world / "full_bin"), str(out), "--dtype", "float32", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "max |logit difference|:" in printed and "VERIFY FAILED" not in printed
    assert "prompt tokens as LLaVA's tokenizer_image_token: yes" in printed
    assert ModelCard.load(out / "README.md").data.pipeline_tag == "image-text-to-text"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from test_hub_standin import installed  # the project's Hub stand-in: huggingface_hub's HTTP, mocked

    yield from installed(monkeypatch, tmp_path)


@pytest.mark.slow
def test_published_lora_checkpoint_from_the_hub_uses_its_registered_base(hub, world, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi()
    served = {
        "Isaachhe/svit-v1.5-13b-lora": world / "lora",
        "lmsys/vicuna-13b-v1.5": world / "vicuna",
        "openai/clip-vit-large-patch14-336": world / "clip",
    }
    for repo, folder in served.items():
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)
    config = json.loads((world / "lora" / "config.json").read_text())
    config["mm_vision_tower"] = "openai/clip-vit-large-patch14-336"
    api.upload_file(
        path_or_fileobj=json.dumps(config).encode(), path_in_repo="config.json", repo_id="Isaachhe/svit-v1.5-13b-lora"
    )

    out, _ = convert_checkpoint("Isaachhe/svit-v1.5-13b-lora", tmp_path / "out", dtype="float32")  # no --base
    _assert_matches_reference(world, "lora", out, base="vicuna")
    card = ModelCard.load(out / "README.md")
    scores = {r.metric_name.removesuffix(" (published)"): r.metric_value for r in card.data.eval_results}
    assert scores["MME-Cognition"] == 364.3 and scores["MMMU"] == 34.1 and "POPE" not in scores
    assert {r.source_name for r in card.data.eval_results} == {"SVIT (Zhao et al., 2023)"}
    assert "over the base model `lmsys/vicuna-13b-v1.5`" in card.text
    assert "(lora checkpoint)" in card.text and "@article{zhao2023svit" in card.text


@pytest.mark.slow
@pytest.mark.parametrize(("name", "base"), [("full_bin", None), ("lora", "vicuna")])
def test_bfloat16_conversion_verifies_against_equally_rounded_weights(world, tmp_path, name, base):
    out, report = convert_checkpoint(
        str(world / name), tmp_path / "out", base=str(world / base) if base else None, dtype="bfloat16", verify=True
    )
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118
    assert report.ok and report.max_logit_diff < 1e-4, report


@pytest.mark.slow
def test_verify_fails_when_the_converted_folder_loses_tokenizer_model(world, tmp_path):
    """Without tokenizer.model the stream falls back to the fast tokenizer, which splits the runs of spaces of verify's
    second prompt differently from SentencePiece: the prompt-id check fails, naming it."""
    out, _ = convert_checkpoint(str(world / "full_st"), tmp_path / "out", dtype="float32")
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["slow_tokenizer_legacy"] is False  # the original's flag, kept for the stream
    tokenizer_json = json.loads((out / "tokenizer.json").read_text())
    assert tokenizer_json["pre_tokenizer"]["prepend_scheme"] == "always"  # plain transformers: "▁" after <s>, <image>
    report = verify(source.open_checkpoint(str(world / "full_st")), world / "clip", out, dtype="float32", image=IMAGE)
    assert report.ok
    (out / "tokenizer.model").unlink()
    report = verify(source.open_checkpoint(str(world / "full_st")), world / "clip", out, dtype="float32", image=IMAGE)
    assert not report.tokens_match and not report.ok
    assert report.max_logit_diff < 1e-4  # the weights are still right: only the prompt ids differ


@pytest.mark.slow
def test_card_states_the_added_token_ids_and_padded_vocabulary(world, tmp_path):
    out, _ = convert_checkpoint(str(world / "full_st"), tmp_path / "out")
    card = (out / "README.md").read_text()
    assert f"`<image>` (id {VOCAB}) and `<pad>` (id {VOCAB + 1})" in card
    assert "vocabulary padded to 448 (a multiple of 64)" in card.replace("\n", " ")
    # What transformers does to the new rows, said as it is (not "initialised with the mean").
    assert "sampled from a normal distribution centred on the mean of the original rows" in card.replace("\n", " ")
    assert "initialised with the mean" not in card
    # The parts as the converted config describes them, with parameters counted from the saved weights.
    model = LlavaForConditionalGeneration.from_pretrained(out)
    llm = sum(p.numel() for n, p in model.named_parameters() if "vision_tower" not in n and "projector" not in n)
    assert "llama decoder, 2 layers, hidden size 32, 2 attention heads, vocabulary 448" in card
    assert "| language model | llama decoder" in card and f"{llm / 1e3:.1f}K".replace(".0K", "K") in card
    assert "HF token set" not in card and "- transformers: 5.23" in card
