# The two commands of the README: `make demo` and `make test`. Both set up `.venv` on a fresh machine first.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
POPE := tests/fixtures/eval/pope
OUT ?= outputs

.PHONY: setup test demo lint bench clean

setup: $(VENV)/.installed

# torch first, explicitly: the CPU wheel (see DEVELOPERS.md); a bare `torch` requirement would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# DeepSpeed's CPU accelerator compiles its shared-memory comm op with g++ on first use (~30-100 s on 2 cores):
	# once here, into torch's extension cache (~/.cache/torch_extensions, reused by later clones), not in the tests.
	$(PY) -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" > /dev/null
	touch $@

# Each multi-process test run has its own time limit (a hang fails that test); `timeout` bounds the whole suite.
test: setup
	timeout --kill-after=60 2400 $(PY) -m pytest -q

# The whole path on bundled sample data, offline, on CPU (a few minutes): build + stage the sample datasets, train the
# tiny model's projector (stage 1) on the staged LCS-558K sample, hand it to stage 2 (2 processes, the staged
# LVIS-Instruct4V sample), evaluate (HF backend, then the openai backend against a local stand-in server,
# parity-checked) and compare the two runs, score real published answers, convert an original-layout checkpoint, stage
# every Hub repo with cards (dry-run pushes), then print a summary.
demo: setup
	rm -rf $(OUT)
	$(PY) dataset_scripts/lvis_instruct4v.py --raw_dir samples/lvis_instruct4v --image_root samples/images --output_dir $(OUT)/datasets/lvis_instruct4v
	$(PY) dataset_scripts/svit.py --raw_dir samples/svit --image_root samples/images --output_dir $(OUT)/datasets/svit --test_split
	$(PY) dataset_scripts/llava_v1_5.py --raw_dir samples/lvis_instruct4v --image_root samples/images --output_dir $(OUT)/datasets/llava_v1_5
	$(PY) dataset_scripts/llava_pretrain.py --raw_dir samples/llava_pretrain --image_root samples/llava_pretrain/images \
		--output_dir $(OUT)/datasets/llava_pretrain
	$(BIN)/hub-llava make-tiny-model $(OUT)/tiny-llava
	$(PY) recipes/sft.py --config recipes/tiny/pretrain/config_smoke.yaml --model_name_or_path $(OUT)/tiny-llava \
		--dataset_name $(OUT)/datasets/llava_pretrain/repo --output_dir $(OUT)/tiny-llava-pretrain
	$(BIN)/accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/sft.py --config recipes/tiny/sft/config_smoke.yaml --model_name_or_path $(OUT)/tiny-llava \
		--mm_projector_path $(OUT)/tiny-llava-pretrain \
		--dataset_name $(OUT)/datasets/lvis_instruct4v/repo --dataset_config nodetail_mix619k --num_train_epochs 3 \
		--output_dir $(OUT)/tiny-llava-sft
	$(BIN)/hub-llava render-sample --config recipes/tiny/sft/config_smoke.yaml --model_name_or_path $(OUT)/tiny-llava --index 1 > $(OUT)/render_sample.json
	$(BIN)/hub-llava eval --model $(OUT)/tiny-llava-sft --benchmarks pope,mme,scienceqa,mmbench --data_dir samples/eval \
		--output_dir $(OUT)/eval --batch_size 4 --max_new_tokens 8
	$(PY) -m hub_llava.eval.standin_server --model $(OUT)/tiny-llava-sft -- $(BIN)/hub-llava eval \
		--model $(OUT)/tiny-llava-sft --benchmarks pope,mme,scienceqa,mmbench --data_dir samples/eval \
		--output_dir $(OUT)/eval_openai --backend openai --base_url {url} --concurrency 4 --max_new_tokens 8 --parity 12 \
		> $(OUT)/eval_openai.log
	$(BIN)/hub-llava compare $(OUT)/eval $(OUT)/eval_openai > $(OUT)/compare.md
	$(BIN)/hub-llava score pope --answers $(POPE)/answers_llava-v1.5-13b.jsonl --questions $(POPE)/llava_pope_test.jsonl \
		--annotations $(POPE)/coco --output $(OUT)/eval/pope_llava-v1.5-13b.json > /dev/null
	$(PY) -m hub_llava.convert.synthetic $(OUT)/original
	$(BIN)/hub-llava convert $(OUT)/original/llava-tiny $(OUT)/models/llava-tiny-hf --verify | tail -3 > $(OUT)/convert.log
	$(BIN)/hub-llava push dataset $(OUT)/datasets/lvis_instruct4v/repo hub_llava/lvis_instruct4v --dry_run > $(OUT)/push_lvis_instruct4v.txt
	$(BIN)/hub-llava push dataset $(OUT)/datasets/svit/repo hub_llava/svit --dry_run > $(OUT)/push_svit.txt
	$(BIN)/hub-llava push dataset $(OUT)/datasets/llava_v1_5/repo hub_llava/llava_v1_5 --dry_run > $(OUT)/push_llava_v1_5.txt
	$(BIN)/hub-llava push dataset $(OUT)/datasets/llava_pretrain/repo hub_llava/llava_pretrain --dry_run \
		> $(OUT)/push_llava_pretrain.txt
	$(BIN)/hub-llava push model $(OUT)/tiny-llava-sft hub_llava/tiny-llava-sft-demo --dry_run > $(OUT)/push_model.txt
	$(BIN)/hub-llava push results $(OUT)/eval/results.json hub_llava/tiny-llava-sft-demo \
		--model_card $(OUT)/tiny-llava-sft/README.md --dry_run > $(OUT)/push_results.txt
	$(PY) samples/demo_summary.py $(OUT)

lint: setup
	$(VENV)/bin/ruff check hub_llava tests recipes dataset_scripts bench samples
	$(VENV)/bin/ruff format --check hub_llava tests recipes dataset_scripts bench samples

clean:
	rm -rf $(OUT)
