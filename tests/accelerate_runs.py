"""Real 2-process runs of `recipes/sft.py` under `accelerate launch` on CPU (gloo), and how to read them back.

Used by `test_training_distributed.py` (DDP) and `test_deepspeed.py` (ZeRO-2 / ZeRO-3). A hang is a failure, not a
skip: every run has a wall-clock limit, after which the whole process group (launcher and ranks) is terminated and
the run reports `returncode=None` with its log.

The runs log each micro-batch of each rank (`LlavaSFTTrainer` at DEBUG level, `--log_level debug
--log_level_replica debug`): its modality and, per row, its token count and trained-token count. The rows of
`mixed_rows()` all have different answer lengths, so that pair names the row; the tests read which rows each rank's
micro-batches held from it.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from datasets import Dataset
from PIL import Image, ImageDraw
from transformers import LlavaConfig, LlavaForConditionalGeneration

from hub_llava.data.schema import BASE_FEATURES
from hub_llava.training.collator import build_collator
from hub_llava.training.configs import LlavaModelConfig, LlavaSFTConfig
from hub_llava.training.data import measure
from hub_llava.training.model import freeze, load_model, load_processor
from hub_llava.training.sampler import modality_grouped_indices

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "recipes" / "tiny" / "sft" / "config_smoke.yaml"
ACCELERATE_CONFIGS = REPO / "recipes" / "accelerate_configs"
BIN = Path(sys.executable).parent
WORLD_SIZE = 2
SEED = 42  # the smoke recipe's

N_IMAGE_ROWS, N_TEXT_ROWS = 22, 10

# Plain SGD: the first update is -LR x the gradient (momentum only acts from the second step on).
LR = 0.2
SGD = ["--optim", "sgd", "--optim_args", "momentum=0.9", "--learning_rate", str(LR), "--mm_projector_lr", str(LR)]
SGD += ["--lr_scheduler_type", "constant", "--warmup_steps", "0"]
LOGGED = ["--log_level", "debug", "--log_level_replica", "debug", "--save_strategy", "steps", "--save_steps", "1"]

MICRO_BATCH = re.compile(
    r"rank (?P<rank>\d+) step (?P<step>\d+) micro-batch (?P<micro>\d+): (?P<kind>images|text-only)(?P<zero> \(zero image\))?"
    r"; rows \(tokens/trained\): (?P<rows>[\d/ ]+)"
)


def mixed_rows() -> list[dict]:
    """22 image rows then 10 text-only rows, every answer of a different length, every row of one modality of the
    same word count (the sampler's length): the sampler's even dealing then pairs long and short answers at random, so
    the micro-batches of a step hold different numbers of trained tokens and the two loss weightings differ.

    At 2 ranks x 2 rows x 2 accumulation steps (global batch 8) LLaVA's sampler leaves 6 image and 2 text rows for
    the last, mixed global batch, sorted by index: rank 0 gets images in both micro-batches, rank 1 images then text
    only. At 2 ranks x 2 rows (global batch 4) the leftovers are 2 + 2: rank 0 images, rank 1 text only. So every run
    has a step where one rank has images and the other none.
    """
    rows = []
    for i in range(N_IMAGE_ROWS):
        image = Image.new("RGB", (28 + 2 * (i % 5), 24 + 3 * (i % 4)), (255, 255, 255))
        ImageDraw.Draw(image).rectangle([3, 3, 20, 18], fill=(10 * i, 255 - 10 * i, 40))
        question = "What is in the image" + " now" * (N_IMAGE_ROWS - i) + "?"
        answer = "A bus" + " 7" * i + "."  # each " 7" is two new tokens (no merge in the tiny tokenizer)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"id": f"img{i:03d}", "messages": messages, "images": [image], "image_paths": [f"{i}.png"]})
    for j in range(N_TEXT_ROWS):
        question = "Describe a street" + " now" * (N_TEXT_ROWS - j) + "."
        answer = "The street has cars" + " 8" * j + "."
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append({"id": f"txt{j:03d}", "messages": messages, "images": [], "image_paths": []})
    return [{**row, "source": "test"} for row in rows]


def write_mixed_rows(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(mixed_rows(), features=BASE_FEATURES).to_parquet(str(folder / "train.parquet"))
    return folder


@dataclass
class Run:
    """A finished (or killed) launch: `returncode` is `None` when it ran past its limit (a hang)."""

    output_dir: Path
    log: str
    returncode: int | None
    seconds: float

    def tail(self, n: int = 4000) -> str:
        return self.log[-n:]

    def micro_batches(self) -> dict[tuple[int, int, int], dict]:
        """`(step, micro_batch, rank) -> {"kind", "zero_image", "rows": [(tokens, trained), ...]}` from the log."""
        found = {}
        for match in MICRO_BATCH.finditer(self.log):
            rows = [tuple(int(x) for x in pair.split("/")) for pair in match["rows"].split()]
            key = (int(match["step"]), int(match["micro"]), int(match["rank"]))
            found[key] = {"kind": match["kind"], "zero_image": bool(match["zero"]), "rows": rows}
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(output_dir: Path, *overrides: str, config: str | None = None, timeout: float = 300) -> Run:
    """`accelerate launch` of the smoke recipe on 2 CPU processes: gloo DDP, or `config` from recipes/accelerate_configs.

    The shipped configs describe an 8-GPU bf16 node; the only CPU overrides are `--num_processes 2` and
    `--mixed_precision no` (the smoke recipe trains in float32).
    """
    command = [str(BIN / "accelerate"), "launch"]
    command += (
        ["--config_file", str(ACCELERATE_CONFIGS / config)] if config else ["--multi_gpu", "--num_machines", "1"]
    )
    command += ["--num_processes", str(WORLD_SIZE), "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", str(free_port()), "recipes/sft.py", "--config", str(SMOKE)]
    command += ["--output_dir", str(output_dir), *overrides]
    log_path = Path(f"{output_dir}.log")
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
            _terminate(process)
    return Run(output_dir, log_path.read_text(), returncode, time.monotonic() - start)


def _terminate(process: subprocess.Popen) -> None:
    """Ends the launcher and its ranks (one process group): SIGTERM, then SIGKILL if still there after 20 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Rows:
    """The test data as the recipe sees it: the same processor, collator, model and sampler lengths, built in-process."""

    def __init__(self, model_dir: str, data_dir: Path):
        self.model_args = LlavaModelConfig(model_name_or_path=model_dir, dtype="float32")
        self.args = LlavaSFTConfig(output_dir=str(data_dir / "unused"), use_cpu=True, bf16=False, report_to="none")
        self.processor = load_processor(self.model_args, self.args)
        self.collator = build_collator(self.processor, self.args)
        self.dataset = Dataset.from_parquet(str(data_dir / "train.parquet"))
        self.batches = [self.collator([dict(row)]) for row in self.dataset]
        self.signatures = [
            (int(batch["attention_mask"].sum()), int((batch["labels"][0, 1:] != -100).sum())) for batch in self.batches
        ]
        assert len(set(self.signatures)) == len(self.signatures), "rows must be told apart by their lengths"
        self.index_of = {signature: i for i, signature in enumerate(self.signatures)}
        n_image_tokens = LlavaConfig.from_pretrained(model_dir).image_seq_length
        stats = measure(self.dataset, self.processor, n_image_tokens, self.args.max_length)
        self.modality_lengths = stats.modality_lengths

    def rows_of(self, run: Run) -> dict[tuple[int, int, int], list[int]]:
        """`(step, micro_batch, rank) -> row indices`, read from the run's log."""
        return {key: [self.index_of[s] for s in batch["rows"]] for key, batch in run.micro_batches().items()}

    def expected_rows(self, batch_size: int, accumulation: int) -> dict[tuple[int, int, int], list[int]]:
        """Which rows LLaVA's sampler gives each (step, micro-batch, rank): accelerate hands rank r every
        `world_size`-th per-device batch, starting at r."""
        order = modality_grouped_indices(
            self.modality_lengths, batch_size, WORLD_SIZE * accumulation, torch.Generator().manual_seed(SEED)
        )
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        per_step = WORLD_SIZE * accumulation
        return {
            (j // per_step + 1, (j % per_step) // WORLD_SIZE, j % WORLD_SIZE): batch for j, batch in enumerate(batches)
        }

    def model(self):
        model = load_model(self.model_args, self.processor)
        freeze(model)  # as the recipe: the vision tower is never trained
        return model

    def token_losses(self, model) -> tuple[list[torch.Tensor], list[int]]:
        """Per row: the summed next-token loss over its trained tokens (with graph) and their count."""
        sums, counts = [], []
        for batch in self.batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            logits = model(**inputs).logits[0, :-1]
            labels = batch["labels"][0, 1:]
            sums.append(torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            counts.append(int((labels != -100).sum()))
        return sums, counts

    def expected_update(self, step_rows: dict[tuple[int, int], list[int]], weighting: str):
        """The first SGD update, computed by hand from per-row losses of the initial model.

        `micro_batch`: each micro-batch's loss is the mean over its trained tokens, divided by the accumulation steps,
        and the gradients are averaged over ranks (LLaVA-1.5, transformers 4.37). `global`: one mean over every
        trained token of the step, all ranks and micro-batches (transformers 5's `num_items_in_batch`).
        """
        model = self.model()
        model.train()
        sums, counts = self.token_losses(model)
        accumulation = len({micro for micro, _ in step_rows})
        total_tokens = sum(counts[i] for rows in step_rows.values() for i in rows)
        loss = 0
        for rows in step_rows.values():
            batch_sum = sum(sums[i] for i in rows)
            if weighting == "micro_batch":
                loss = loss + batch_sum / sum(counts[i] for i in rows) / accumulation / WORLD_SIZE
            else:
                loss = loss + batch_sum / total_tokens
        loss.backward()
        return {name: -LR * p.grad for name, p in model.named_parameters() if p.grad is not None}


def update_of(run_dir: Path, before: dict[str, torch.Tensor], checkpoint: str) -> dict[str, torch.Tensor]:
    """`weights(checkpoint) - before`, by the model's own parameter names."""
    after = state_dict(run_dir / checkpoint)
    return {name: after[name] - before[name] for name in before}


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone() for k, v in LlavaForConditionalGeneration.from_pretrained(folder).state_dict().items()
    }


def relative_error(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """||got - expected|| / ||expected|| over all the parameters in `expected`."""
    diff = torch.cat([(got[name] - expected[name]).flatten() for name in expected])
    return float(diff.norm() / torch.cat([t.flatten() for t in expected.values()]).norm())
