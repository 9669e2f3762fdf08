"""Merges a LLaVA LoRA adapter into base weights as they stream past: W + (alpha / r) * B @ A.

LLaVA-1.5's LoRA runs (r 128, alpha 256) wrap every LLM linear but `lm_head`, before the vision tower exists, so the
adapter only touches `model.layers.*` weights. Merging per weight keeps memory at one shard plus the adapter.
"""

import math
import re

import torch

from hub_llava.convert.source import OriginalCheckpoint, iter_file, read_json

_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])(\.default)?\.weight$")
_UNSUPPORTED = ("use_dora", "fan_in_fan_out")


class LoraMerger:
    """The (A, B, scaling) of each adapted weight of a LoRA checkpoint, applied with `merge(name, weight)`."""

    def __init__(self, checkpoint: OriginalCheckpoint):
        config = read_json(checkpoint.folder / "adapter_config.json")
        for option in _UNSUPPORTED:
            if config.get(option):
                raise ValueError(f"{checkpoint.folder}/adapter_config.json sets {option}: not supported.")
        if config.get("rank_pattern") or config.get("alpha_pattern"):
            raise ValueError(f"{checkpoint.folder}/adapter_config.json has rank/alpha patterns: not supported.")
        rank, alpha = config["r"], config["lora_alpha"]
        self.scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        self.pairs: dict[str, dict[str, torch.Tensor]] = {}
        path = checkpoint.adapter_file()
        for name, tensor in iter_file(path):
            match = _LORA_KEY.match(name)
            if match is None:
                raise ValueError(f"Unexpected key {name!r} in {path}: expected LoRA A/B weights.")
            self.pairs.setdefault(match["module"] + ".weight", {})[match["part"]] = tensor
        incomplete = [name for name, pair in self.pairs.items() if len(pair) != 2]
        if incomplete:
            raise ValueError(f"{path} has LoRA weights without their A/B partner: {incomplete[:3]}")
        self.merged: set[str] = set()

    def merge(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """`weight` with its adapter delta added, in float32 (the caller casts once, to the output dtype); unchanged if
        the adapter skips it."""
        pair = self.pairs.get(name)
        if pair is None:
            return weight
        delta = pair["B"].float() @ pair["A"].float() * self.scaling
        self.merged.add(name)
        return weight.float() + delta

    def check_all_merged(self) -> None:
        unmatched = sorted(set(self.pairs) - self.merged)
        if unmatched:
            raise ValueError(f"LoRA weights match no weight of the base model (wrong --base?): {unmatched[:3]}")
