"""Benchmark scores while a run trains (`eval_benchmarks`, `eval_data_dir`, `eval_limit`, `benchmark_eval_steps`).

At each save (or every `benchmark_eval_steps` optimizer steps) the model being trained answers the benchmarks through
`hub-llava eval`'s own runner (`hub_llava.eval.run.evaluate`: the same prompts, generation and scorers), in its
training dtype, in eval mode (no dropout, no activation checkpointing), then goes back to training. What it leaves:

- `<output_dir>/benchmark_eval/step-<N>/`: the runner's folder (`<benchmark>/answers.jsonl`, `details.jsonl`,
  `run.json`) and `results.json`, in `hub-llava eval`'s format plus `"training": {"global_step", "epoch"}`; a
  score cut by `eval_limit` says so there (`limit`, `answered`, `total`), as `hub-llava eval --limit` does;
- `<output_dir>/checkpoint-<N>/results.json`: the same, when step N is saved (its `model_identity` is then the
  checkpoint's weights), so publishing a checkpoint carries its scores;
- one log entry per evaluation through `Trainer.log` (so `trainer_state.json`'s `log_history` and every `report_to`
  integration get it): `eval_<benchmark>_<metric>`, e.g. `eval_pope_f1`, `eval_mme_perception`,
  `eval_mme_cognition` (the key alone when it already ends with the metric). wandb / trackio show them as
  `eval/pope_f1`, like the Trainer's `eval_loss`.

Distributed: every process answers its shard of the questions, as `accelerate launch ... hub-llava eval` shards
them; the main process merges, scores and writes; every rank logs the same scores. Under DDP and ZeRO-1/2 each rank
has the full weights and answers alone. Under ZeRO-3 each forward gathers the weights from all ranks, so the ranks
answer in lockstep (`HFBackend(lockstep=True)`: the same number of `generate` calls on every rank, `synced_gpus`
within one) and, for questions without an image, need `zero_image_for_text_only: yes` (the default) so that every
rank runs the vision tower in each forward. FSDP is refused when the trainer is built (not verifiable on CPU here).

Missing data (a benchmark's question, ground-truth or image files) is an error when the callback is built, before
the first step, naming what is missing.
"""

import json
import logging
import shutil
from pathlib import Path

from accelerate.utils import broadcast_object_list
from transformers import Trainer, TrainerCallback
from transformers.integrations import is_deepspeed_zero3_enabled

from hub_llava.eval import registry
from hub_llava.eval.identity import model_identity
from hub_llava.eval.run import benchmark_data, check_benchmark_files, evaluate

logger = logging.getLogger(__name__)

EVAL_FOLDER = "benchmark_eval"


def check_benchmark_data(keys: list[str], data_dir, work_dir: Path) -> None:
    """Reads every benchmark's questions and checks its ground-truth files and images, as `hub-llava eval` does before
    answering; raises naming the benchmark and what is missing."""
    for key in keys:
        benchmark = registry.load(key)
        try:
            root = benchmark_data(benchmark, data_dir, work_dir)
            check_benchmark_files(benchmark, root, benchmark.helper.load_docs(benchmark, root))
        except (OSError, ValueError) as error:
            where = f"eval_data_dir={data_dir}" if data_dir else "its Hub dataset"
            raise type(error)(f"eval_benchmarks: {key} cannot be evaluated from {where}: {error}") from error


def log_keys(results: dict) -> dict[str, float]:
    """`eval_<key>_<metric>` -> score for every entry of a results.json (`eval_<key>` when the key ends with the
    metric, e.g. `mme_cognition`)."""
    logs = {}
    for key, entry in results["results"].items():
        name = key if key.endswith(entry["metric"]) else f"{key}_{entry['metric']}"
        logs[f"eval_{name}"] = entry["score"]
    return logs


def write_results(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class BenchmarkEvalCallback(TrainerCallback):
    """Runs `args.eval_benchmarks` on the training model; see the module docstring.

    Usage (as TRL's `LogCompletionsCallback`: it logs through the trainer):

        trainer.add_callback(BenchmarkEvalCallback(trainer))

    Args:
        trainer (`LlavaSFTTrainer`): the trainer; its `args` are a `LlavaSFTConfig` with `eval_benchmarks` set.
    """

    def __init__(self, trainer):
        args = trainer.args
        if trainer.is_fsdp_enabled:
            raise ValueError(
                "eval_benchmarks cannot run under FSDP; train with ZeRO-3, ZeRO-2 or DDP "
                "(recipes/accelerate_configs/), or evaluate the saved checkpoints with `hub-llava eval`"
            )
        self.lockstep = is_deepspeed_zero3_enabled()
        if self.lockstep and args.zero_image_for_text_only != "yes":
            raise ValueError(
                "eval_benchmarks under ZeRO-3 need zero_image_for_text_only: yes (every rank must run the vision "
                "tower in each forward, whatever its question holds)"
            )
        self.trainer = trainer
        self.work_dir = Path(args.output_dir) / EVAL_FOLDER
        check_benchmark_data(args.eval_benchmarks, args.eval_data_dir, self.work_dir)
        # Without eval_data_dir the check wrote the Hub datasets under work_dir/hub_data: every evaluation reads them.
        self.data_dir = args.eval_data_dir or str(self.work_dir / "hub_data")
        self.last: tuple[int, dict] | None = None  # (step, results.json) of the latest evaluation

    def on_step_end(self, args, state, control, **kwargs):
        # DefaultFlowCallback (always first) has decided by now whether this step saves.
        due = state.global_step % args.benchmark_eval_steps == 0 if args.benchmark_eval_steps else control.should_save
        if due:
            self._evaluate(args, state)

    def on_save(self, args, state, control, **kwargs):
        if args.benchmark_eval_steps is None and (self.last is None or self.last[0] != state.global_step):
            self._evaluate(args, state)  # epoch / best-model saves are decided after on_step_end
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.last and self.last[0] == state.global_step and state.is_world_process_zero and checkpoint.is_dir():
            # The weights just saved are the ones evaluated: the checkpoint's fingerprint names them.
            write_results(checkpoint / "results.json", {**self.last[1], "model_identity": model_identity(checkpoint)})

    def _evaluate(self, args, state) -> None:
        step = state.global_step
        checkpoint = str(Path(args.output_dir) / f"checkpoint-{step}")  # what this step's save is called
        folder = self.work_dir / f"step-{step}"
        if state.is_world_process_zero and folder.exists():
            # Answers of an earlier run at this step (a crash before its save, a run into the same output_dir) were
            # made by other weights: never resumed from.
            shutil.rmtree(folder)
        self.trainer.accelerator.wait_for_everyone()
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        # No dropout; activation checkpointing only runs in training mode. The KV cache is on although the Trainer set
        # `model.config.use_cache = False`: `generate` follows its generation config (use_cache=True).
        model.eval()
        try:
            summary = evaluate(
                checkpoint, args.eval_benchmarks, self.data_dir, folder,
                limit=args.eval_limit, batch_size=args.per_device_eval_batch_size,
                dtype=str(model.dtype).removeprefix("torch."), max_new_tokens=args.eval_max_new_tokens,
                model=model, processor=self.trainer.processing_class,
                identity={"model": checkpoint, "revision": None, "weights": None}, lockstep=self.lockstep,
            )  # fmt: skip
        finally:
            model.train(was_training)
        summary["training"] = {"global_step": step, "epoch": state.epoch}
        if state.is_world_process_zero:
            write_results(folder / "results.json", summary)
        self.last = (step, summary)
        # Only the main process scored: every rank logs its numbers, so all ranks' log_history agree.
        scores = broadcast_object_list([log_keys(summary) if state.is_world_process_zero else None])[0]
        logger.info("step %d: %s", step, ", ".join(f"{k} = {v}" for k, v in scores.items()))
        # `Trainer.log` itself: TRL's `SFTTrainer.log` would move the training metrics gathered since the last logging
        # step (entropy, mean_token_accuracy, num_tokens) into this entry, and the step's own log would lack them.
        Trainer.log(self.trainer, scores)
