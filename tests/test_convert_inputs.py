"""Key mapping, bad inputs, the registry of published checkpoints and Hub ids (download mocked at snapshot_download)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from hub_llava.convert import keymap, registry, source
from hub_llava.convert import synthetic as syn
from hub_llava.convert.converter import convert_checkpoint

HIDDEN, VISION_HIDDEN = 32, 24
CLIP_ID = "openai/clip-vit-large-patch14-336"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return syn.write_clip(tmp_path_factory.mktemp("clip") / "clip", syn.clip_config(VISION_HIDDEN))


def _full_checkpoint(folder: Path, vision_tower: str, **config_overrides) -> Path:
    llm = syn.llm_config(400, HIDDEN)
    specs = {**syn.llm_tensors(llm), **syn.projector_tensors(VISION_HIDDEN, HIDDEN)}
    syn.write_weights(folder, specs, shards=2, fmt="bin")
    syn.write_config(folder, syn.original_config(llm, vision_tower, VISION_HIDDEN, **config_overrides))
    syn.write_llama_tokenizer(folder, 400)
    return folder


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("model.embed_tokens.weight", "model.language_model.embed_tokens.weight"),
        ("model.layers.3.self_attn.q_proj.weight", "model.language_model.layers.3.self_attn.q_proj.weight"),
        ("model.norm.weight", "model.language_model.norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
        ("model.mm_projector.0.weight", "model.multi_modal_projector.linear_1.weight"),
        ("model.mm_projector.2.bias", "model.multi_modal_projector.linear_2.bias"),
        (
            "model.vision_tower.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
            "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
        ),
        ("model.layers.0.self_attn.rotary_emb.inv_freq", None),
        ("model.vision_tower.vision_tower.vision_model.embeddings.position_ids", None),
    ],
)
def test_key_map(original, expected):
    assert keymap.map_key(original) == expected


def test_clip_and_peft_keys():
    assert keymap.map_clip_key("vision_model.post_layernorm.weight") == "model.vision_tower.post_layernorm.weight"
    assert keymap.map_clip_key("text_model.embeddings.token_embedding.weight") is None
    assert keymap.map_clip_key("visual_projection.weight") is None
    assert keymap.strip_peft_prefix("base_model.model.model.mm_projector.0.weight") == "model.mm_projector.0.weight"
    assert keymap.strip_peft_prefix("model.mm_projector.0.weight") == "model.mm_projector.0.weight"


def test_unknown_weight_is_named():
    with pytest.raises(ValueError, match="model.vision_resampler.query"):
        keymap.map_key("model.vision_resampler.query")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mm_projector_type": "linear"}, "mm_projector_type 'linear' in config.json is not supported"),
        ({"mm_projector_type": "mlp3x_gelu"}, "mm_projector_type 'mlp3x_gelu'"),
        ({"mm_use_im_start_end": True}, "mm_use_im_start_end"),
        ({"mm_vision_select_feature": "cls"}, "mm_vision_select_feature 'cls'"),
        ({"image_aspect_ratio": "anyres"}, "image_aspect_ratio 'anyres'"),
        ({"mm_hidden_size": 1024}, "mm_hidden_size 1024 but the vision tower's hidden size is 24"),
    ],
)
def test_unsupported_configs_fail_clearly(tmp_path, clip_dir, overrides, message):
    _full_checkpoint(tmp_path / "ckpt", str(clip_dir), **overrides)
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(str(tmp_path / "ckpt"), tmp_path / "out")


def test_missing_weights_fail_clearly(tmp_path, clip_dir):
    folder = _full_checkpoint(tmp_path / "ckpt", str(clip_dir))
    for weights in folder.glob("pytorch_model*"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match=f"No weights in {folder}"):
        convert_checkpoint(str(folder), tmp_path / "out")


def test_index_naming_a_missing_shard_fails(tmp_path, clip_dir):
    folder = _full_checkpoint(tmp_path / "ckpt", str(clip_dir))
    (folder / "pytorch_model-00002-of-00002.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"lists shards that are missing.*pytorch_model-00002-of-00002.bin"):
        convert_checkpoint(str(folder), tmp_path / "out")


def test_incomplete_checkpoint_names_the_missing_weights(tmp_path, clip_dir):
    folder = _full_checkpoint(tmp_path / "ckpt", str(clip_dir))
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shard = folder / index["weight_map"]["model.norm.weight"]
    state = torch.load(shard, weights_only=True)
    del state["model.norm.weight"]
    torch.save(state, shard)
    with pytest.raises(ValueError, match=r"weights missing after conversion \(1\).*model.language_model.norm.weight"):
        convert_checkpoint(str(folder), tmp_path / "out")


class _Payload:
    """Unpickling this runs code (creates a file); `weights_only=True` must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused(tmp_path, clip_dir):
    folder = _full_checkpoint(tmp_path / "ckpt", str(clip_dir))
    marker = tmp_path / "code-ran"
    shard = folder / "pytorch_model-00001-of-00002.bin"
    state = torch.load(shard, weights_only=True)
    state["model.embed_tokens.weight"] = _Payload(marker)
    torch.save(state, shard)
    with pytest.raises(
        ValueError, match=r"pytorch_model-00001-of-00002.bin could not be loaded with weights_only=True"
    ):
        convert_checkpoint(str(folder), tmp_path / "out")
    assert not marker.exists()


def test_lora_without_base_asks_for_it(tmp_path):
    folder = tmp_path / "lora"
    syn.write_config(folder, syn.original_config(syn.llm_config(10), CLIP_ID, VISION_HIDDEN))
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 8}))
    with pytest.raises(ValueError, match="is a lora checkpoint: pass --base"):
        source.open_checkpoint(str(folder))


def test_not_a_folder_nor_a_hub_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a checkpoint folder nor a Hub repo id"):
        source.open_checkpoint(str(tmp_path / "nope" / "deeper" / "still"))


def test_registry_lists_the_published_checkpoints_with_corrected_results():
    models = registry.published_models()
    assert set(models) == {
        "X2FD/LVIS-Instruct4V-Nodetail-mix619k-7b",
        "X2FD/LVIS-Instruct4V-Nodetail-mix619k-13b",
        "X2FD/LVIS-Instruct4V-mix730k-7b",
        "X2FD/LVIS-Instruct4V-LLaVA-Instruct-mix880k-7b",
        "X2FD/LVIS-Instruct4V-LLaVA-Instruct-mix880k-13b",
        "Isaachhe/svit-v1.5-13b-full",
        "Isaachhe/svit-v1.5-13b-lora",
        "liuhaotian/llava-v1.5-7b",
        "liuhaotian/llava-v1.5-13b",
    }
    lvis = registry.lookup("x2fd/lvis-instruct4v-nodetail-mix619k-7b")
    assert lvis.published.results["scienceqa"] == 68.4 and lvis.published.results["mmbench_cn"] == 60.0
    assert "70.3 / 67.1" in lvis.published.note and "2023-11-28" in lvis.published.note
    svit = registry.lookup("Isaachhe/svit-v1.5-13b-lora")
    assert svit.format == "lora" and svit.base_model == "lmsys/vicuna-13b-v1.5"
    assert (svit.published.results["mme_cognition"], svit.published.results["mmmu"]) == (364.3, 34.1)
    assert "pope" not in svit.published.results
    llava13 = registry.lookup("liuhaotian/llava-v1.5-13b").published.results
    assert [llava13[k] for k in ("vqav2", "gqa", "pope", "mme", "mm_vet")] == [80.0, 63.3, 85.9, 1531.3, 36.1]
    assert registry.lookup("someone/else") is None


@pytest.mark.slow
def test_converting_a_registry_model_from_the_hub_writes_published_results(tmp_path, clip_dir, monkeypatch):
    repo_id = "X2FD/LVIS-Instruct4V-Nodetail-mix619k-7b"
    checkpoint = _full_checkpoint(tmp_path / "hub" / "ckpt", CLIP_ID)
    hub = {repo_id: checkpoint, CLIP_ID: clip_dir}
    calls = []

    def fake_snapshot_download(repo, allow_patterns=None, token=None):
        calls.append((repo, tuple(allow_patterns)))
        snapshot = tmp_path / "snapshots" / repo.replace("/", "--")
        if not snapshot.exists():
            shutil.copytree(hub[repo], snapshot)
        return str(snapshot)

    monkeypatch.setattr(source, "snapshot_download", fake_snapshot_download)
    out, _ = convert_checkpoint(repo_id, tmp_path / "out", repo_id="me/lvis-instruct4v-7b-hf")

    assert calls[0] == (repo_id, tuple(source.WEIGHT_PATTERNS))
    assert (CLIP_ID, tuple(source.CONFIG_PATTERNS)) in calls  # the config first; weights only because none inside
    assert (CLIP_ID, tuple(source.WEIGHT_PATTERNS)) in calls
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == repo_id
    assert card.data.model_name == "LVIS-Instruct4V-Nodetail-mix619k-7B"
    assert "X2FD/LVIS-Instruct4V" in card.data.datasets
    scores = {r.metric_name.removesuffix(" (published)"): r.metric_value for r in card.data.eval_results}
    assert len(scores) == 12
    assert scores["ScienceQA-IMG"] == 68.4 and scores["MME-Perception"] == 1472.9 and scores["MM-Vet"] == 34.6
    assert {r.source_name for r in card.data.eval_results} == {"LVIS-Instruct4V (Wang et al., 2023)"}
    assert "corrected them on 2023-11-28" in card.text
    assert "@article{wang2023instruct4v" in card.text and "@misc{liu2023improvedllava" in card.text
    assert 'model_id = "me/lvis-instruct4v-7b-hf"' in card.text


def test_reference_tokenisation_is_llavas_tokenizer_image_token(tmp_path):
    from hub_llava.convert.verify import IMAGE_TOKEN_INDEX, SentencePieceTokenizer, llava_prompt, tokenizer_image_token

    folder = syn.write_llama_tokenizer(tmp_path / "tok")
    tokenizer = SentencePieceTokenizer(folder / "tokenizer.model")
    prompt = llava_prompt("What is this?")
    assert prompt.endswith(" USER: <image>\nWhat is this? ASSISTANT:")
    ids = tokenizer_image_token(prompt, tokenizer)
    pieces = [tokenizer.model.id_to_piece(i) if i >= 0 else "IMAGE" for i in ids]
    # One BOS; each chunk tokenised on its own, so sentencepiece's "▁" starts both the system text and the question.
    assert pieces[0] == "<s>" and pieces.count("<s>") == 1 and pieces[1].startswith("▁A")
    image = pieces.index("IMAGE")
    assert ids[image] == IMAGE_TOKEN_INDEX and pieces[image - 1 : image + 3] == ["▁", "IMAGE", "▁", "<0x0A>"]


@pytest.mark.parametrize("with_llava_config", [False, True])
def test_converted_tokenizer_reproduces_llavas_ids_and_keeps_doing_so_after_saving(tmp_path, with_llava_config):
    from transformers import AutoProcessor, AutoTokenizer

    from hub_llava.convert.build import tokenizer_with_llava_tokens
    from hub_llava.convert.verify import IMAGE_TOKEN_INDEX, SentencePieceTokenizer, llava_prompt, tokenizer_image_token
    from hub_llava.processing import build_processor

    folder = syn.write_llama_tokenizer(tmp_path / "tok")
    if with_llava_config:  # AutoTokenizer would then return a generic backend that drops every "▁" prefix
        syn.write_config(folder, syn.original_config(syn.llm_config(400), CLIP_ID, VISION_HIDDEN))
        assert "▁" not in AutoTokenizer.from_pretrained(folder).tokenize("<s>A")[1]
    converted = tmp_path / "converted"
    build_processor(tokenizer_with_llava_tokens(folder), image_size=28).save_pretrained(converted)
    if with_llava_config:
        (converted / "config.json").write_text((folder / "config.json").read_text())
    processor = AutoProcessor.from_pretrained(converted)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = processor.tokenizer.convert_tokens_to_ids("<image>")
    reference = tokenizer_image_token(
        llava_prompt("What is this?"), SentencePieceTokenizer(folder / "tokenizer.model")
    )
    ours = processor.tokenizer(prompt, add_special_tokens=False).input_ids
    assert ours == [image if i == IMAGE_TOKEN_INDEX else i for i in reference]


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from test_hub_standin import installed  # the project's Hub stand-in: huggingface_hub's HTTP, mocked

    yield from installed(monkeypatch, tmp_path)


@pytest.mark.slow
def test_hub_round_trip_download_convert_push(hub, tmp_path, clip_dir):
    """Original checkpoint and CLIP served by the Hub stand-in (HTTP mocked); converted, pushed, loaded back."""
    from huggingface_hub import HfApi
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from hub_llava.cli import main as cli_main

    repo_id, target = "liuhaotian/llava-v1.5-7b", "me/llava-v1.5-7b-hf"
    api = HfApi()
    for repo, folder in ((repo_id, _full_checkpoint(tmp_path / "ckpt", CLIP_ID)), (CLIP_ID, clip_dir)):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)

    assert cli_main(["convert", repo_id, str(tmp_path / "out"), "--push_to_hub", "--repo_id", target]) == 0
    tree = hub.tree(target)
    model = LlavaForConditionalGeneration.from_pretrained(tree)
    assert model.dtype == torch.float16 and model.config.text_config.vocab_size % 64 == 0
    assert (
        AutoProcessor.from_pretrained(tree).tokenizer.convert_tokens_to_ids("<image>") == model.config.image_token_id
    )
    card = ModelCard.load(tree / "README.md")
    scores = {r.metric_name.removesuffix(" (published)"): r.metric_value for r in card.data.eval_results}
    assert scores["MME-Perception"] == 1510.7 and scores["POPE"] == 85.9 and len(scores) == 12
    assert {r.source_name for r in card.data.eval_results} == {"LLaVA-1.5 (Liu et al., 2023)"}
    assert card.text.count("@misc{liu2023improvedllava") == 1


def test_legacy_non_zip_bin_files_load_without_mmap(tmp_path):
    path = tmp_path / "old.bin"
    torch.save({"model.norm.weight": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(source.load_bin(path)["model.norm.weight"], torch.arange(3.0))


def test_vision_tower_override_needs_no_download(tmp_path, clip_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"unexpected download {args}")

    monkeypatch.setattr(source, "snapshot_download", no_network)
    folder = _full_checkpoint(tmp_path / "ckpt", CLIP_ID)  # config names the Hub CLIP; a local copy is given instead
    out, _ = convert_checkpoint(str(folder), tmp_path / "out", vision_tower=str(clip_dir))
    config = json.loads((out / "config.json").read_text())
    assert config["vision_config"]["hidden_size"] == VISION_HIDDEN and config["vision_config"]["image_size"] == 28
    assert f"Vision tower:\n`{clip_dir}`" in (out / "README.md").read_text()


# DESIGN.md §5, transcribed a second time, in its own order:
# VQAv2/GQA/VizWiz/SQA/TextVQA/POPE/MME-P/MMB/MMB-CN/SEED/LLaVA-W/MM-Vet (+ MME cognition, MMMU for SVIT).
PUBLISHED_TABLE = {
    "liuhaotian/llava-v1.5-7b": "78.5/62.0/50.0/66.8/58.2/85.9/1510.7/64.3/58.3/58.6/65.4/31.1",
    "liuhaotian/llava-v1.5-13b": "80.0/63.3/53.6/71.6/61.3/85.9/1531.3/67.7/63.6/61.6/72.5/36.1",
    "X2FD/LVIS-Instruct4V-Nodetail-mix619k-7b": "79.2/62.6/52.5/68.4/57.6/84.0/1472.9/67.1/60.0/60.8/70.4/34.6",
    "X2FD/LVIS-Instruct4V-Nodetail-mix619k-13b": "80.1/63.8/51.4/69.0/62.1/85.3/1572.0/67.8/61.0/62.5/76.7/40.2",
    "X2FD/LVIS-Instruct4V-mix730k-7b": "79.4/62.6/52.6/68.9/58.4/85.1/1495.3/66.6/59.6/60.5/67.1/33.3",
    "X2FD/LVIS-Instruct4V-LLaVA-Instruct-mix880k-7b": "79.6/62.6/51.8/68.3/58.7/86.0/1528.2/66.2/60.4/60.6/67.0/31.5",
    "X2FD/LVIS-Instruct4V-LLaVA-Instruct-mix880k-13b": "80.7/63.6/57.2/70.6/62.5/86.0/1574.9/68.0/61.1/61.6/71.3/37.4",
    "Isaachhe/svit-v1.5-13b-full": "80.3/64.1/56.4/70.0/60.8/–/1565.8/69.1/63.1/61.9/–/–",
    "Isaachhe/svit-v1.5-13b-lora": "80.1/63.4/56.7/69.9/61.1/–/1560.3/68.3/63.2/61.8/–/–",
}
TABLE_KEYS = ["vqav2", "gqa", "vizwiz", "scienceqa", "textvqa", "pope", "mme", "mmbench", "mmbench_cn", "seed"]
TABLE_KEYS += ["llava_bench", "mm_vet"]


@pytest.mark.parametrize("repo_id", sorted(PUBLISHED_TABLE))
def test_registry_matches_the_design_table(repo_id):
    expected = {k: float(v) for k, v in zip(TABLE_KEYS, PUBLISHED_TABLE[repo_id].split("/")) if v != "–"}
    expected.update(
        {
            "Isaachhe/svit-v1.5-13b-full": {"mme_cognition": 323.2, "mmmu": 33.3},
            "Isaachhe/svit-v1.5-13b-lora": {"mme_cognition": 364.3, "mmmu": 34.1},
        }.get(repo_id, {})
    )
    assert registry.lookup(repo_id).published.results == expected


def test_old_clip_configs_vision_config_dict_wins(tmp_path):
    from hub_llava.convert.build import vision_config

    config = {
        "model_type": "clip",
        "vision_config": {"hidden_size": 768, "image_size": 224, "patch_size": 32, "num_hidden_layers": 12},
        "vision_config_dict": {"hidden_size": 1024, "image_size": 336, "patch_size": 14, "num_hidden_layers": 24,
                               "num_attention_heads": 16, "intermediate_size": 4096, "projection_dim": 768},
        "text_config_dict": {"hidden_size": 768},
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    vision = vision_config(tmp_path)
    assert (vision.hidden_size, vision.image_size, vision.patch_size, vision.num_hidden_layers) == (1024, 336, 14, 24)
    assert vision.hidden_act == "quick_gelu"


@pytest.mark.slow
def test_push_with_a_read_only_token_is_a_clear_error(hub, tmp_path, clip_dir, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from hub_llava.cli import main as cli_main

    api = HfApi()
    for repo, folder in (
        ("liuhaotian/llava-v1.5-7b", _full_checkpoint(tmp_path / "ckpt", CLIP_ID)),
        (CLIP_ID, clip_dir),
    ):
        api.create_repo(repo)
        api.upload_folder(repo_id=repo, folder_path=folder)
    monkeypatch.setenv("HF_TOKEN", "hf_read_only0000")  # the stand-in answers 403 to writes, like the Hub
    argv = ["convert", "liuhaotian/llava-v1.5-7b", str(tmp_path / "out"), "--push_to_hub", "--repo_id", "me/x"]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert "write access" in err and "hf_read_only0000" not in err
    assert (tmp_path / "out" / "model.safetensors").is_file()  # the conversion itself is kept


def test_a_clip_saved_by_transformers_5_as_clip_vision_model_converts(tmp_path, clip_dir):
    """transformers 5 saves `CLIPVisionModel` without the `vision_model.` level (`embeddings.*`, `encoder.*`): the
    converter and --verify's reference read that layout as well as openai's `CLIPModel` one."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vision = CLIPVisionModel(CLIPVisionConfig.from_pretrained(clip_dir))  # the same weights, as transformers 5 saves
    vision.load_state_dict(CLIPVisionModel.from_pretrained(clip_dir).state_dict())  # a CLIPVisionModel it built itself
    vision.save_pretrained(tmp_path / "clip_v5")
    (tmp_path / "clip_v5" / "preprocessor_config.json").write_text((clip_dir / "preprocessor_config.json").read_text())
    keys = list(source.iter_file(tmp_path / "clip_v5" / "model.safetensors"))
    assert not any(name.startswith("vision_model.") for name, _ in keys)
    assert (
        keymap.map_clip_key("encoder.layers.0.mlp.fc1.weight") == "model.vision_tower.encoder.layers.0.mlp.fc1.weight"
    )
    assert keymap.map_clip_key("text_projection.weight") is None
    folder = _full_checkpoint(tmp_path / "full", str(tmp_path / "clip_v5"))
    out, report = convert_checkpoint(str(folder), tmp_path / "out", verify=True)
    assert report.ok and report.max_logit_diff < 1e-4
    from_openai, _ = convert_checkpoint(str(folder), tmp_path / "out_openai", vision_tower=str(clip_dir))
    from safetensors import safe_open

    with (
        safe_open(str(out / "model.safetensors"), "pt") as a,
        safe_open(str(from_openai / "model.safetensors"), "pt") as b,
    ):
        for key in a.keys():  # noqa: SIM118
            if "vision_tower" in key:
                assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key


def test_dtype_defaults_to_the_source_checkpoints(tmp_path, clip_dir):
    """A float32 source stays float32 unless --dtype says otherwise (rounding it to float16 moved the logits by
    ~3e-4); float16 when the config names no dtype."""
    from safetensors import safe_open

    from hub_llava.convert.converter import source_dtype

    folder = _full_checkpoint(tmp_path / "fp32", str(clip_dir), torch_dtype="float32")
    out, report = convert_checkpoint(str(folder), tmp_path / "out", verify=True)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}  # noqa: SIM118
    assert report.ok and report.max_logit_diff < 1e-5
    assert "weights stored in `float32`" in (out / "README.md").read_text()
    assert source_dtype({}) == "float16" and source_dtype({"dtype": "bfloat16"}) == "bfloat16"
    with pytest.raises(ValueError, match="torch_dtype 'int8'"):
        source_dtype({"torch_dtype": "int8"})


def test_a_checkpoint_that_is_not_an_original_llava_one_is_named_as_such(tmp_path, clip_dir):
    """A transformers Llava folder (a hub-llava output) or a plain Llama: said so, not "mm_projector_type 'linear'"."""
    from hub_llava.testing import tiny_llava, tiny_tokenizer

    hf_llava = tmp_path / "hf_llava"
    tiny_llava(tiny_tokenizer()).save_pretrained(hf_llava)
    with pytest.raises(ValueError, match="already a transformers Llava checkpoint .* nothing to convert"):
        convert_checkpoint(str(hf_llava), tmp_path / "out")
    plain = tmp_path / "llama"
    llm = syn.llm_config(400, HIDDEN)
    syn.write_weights(plain, syn.llm_tensors(llm), fmt="safetensors")
    llm.save_pretrained(plain)
    with pytest.raises(ValueError, match=r"not an original LLaVA checkpoint \(architectures .*no mm_vision_tower"):
        convert_checkpoint(str(plain), tmp_path / "out")
