"""LLaVA-1.5's `group_by_modality_length` sampler: every global batch all-image or all-text.

Semantics (LLaVA's `get_modality_length_grouped_indices`): lengths are word counts, negative for text-only rows.
Image rows and text rows are shuffled separately and cut into megabatches of one global batch
(`per_device_batch_size * world_size * gradient_accumulation_steps` rows); inside a megabatch rows are sorted by
length (longest first) and dealt to the per-device batches so their lengths are even. The last megabatch of each
modality is set aside, full or not (LLaVA always moves it); the other megabatches are shuffled together and the two
set-aside ones, mixed and sorted by row index, come at the very end. The order depends only on the seed and epoch, so
every rank computes the same one and accelerate hands rank r every `world_size`-th per-device batch from the r-th on.
"""

import torch
from torch.utils.data import Sampler


def _even_chunks(indices: list[int], lengths: list[int], n_chunks: int) -> list[list[int]]:
    """Deals `indices` (sorted longest first) into `n_chunks` equal-size chunks, each to the shortest so far."""
    if len(indices) % n_chunks:
        return [indices[i::n_chunks] for i in range(n_chunks)]
    size = len(indices) // n_chunks
    chunks, totals = [[] for _ in range(n_chunks)], [0] * n_chunks
    for index in indices:
        open_chunks = [c for c in range(n_chunks) if len(chunks[c]) < size]
        target = min(open_chunks, key=lambda c: totals[c])
        chunks[target].append(index)
        totals[target] += abs(lengths[index])
    return chunks


def _megabatches(indices: list[int], lengths: list[int], global_batch: int, n_chunks: int, generator):
    """Shuffles `indices`, cuts them into megabatches, sorts and deals each one."""
    order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    megabatches = []
    for start in range(0, len(order), global_batch):
        megabatch = sorted(order[start : start + global_batch], key=lambda i: abs(lengths[i]), reverse=True)
        megabatches.append([i for chunk in _even_chunks(megabatch, lengths, n_chunks) for i in chunk])
    return megabatches


def modality_grouped_indices(lengths: list[int], batch_size: int, n_batches: int, generator=None) -> list[int]:
    """The sample order of LLaVA's modality-grouped sampler.

    Args:
        lengths (`list[int]`):
            Per row: word count, positive for rows with an image, negative for text-only rows.
        batch_size (`int`):
            Per-device batch size.
        n_batches (`int`):
            Per-device batches in a global batch (`world_size * gradient_accumulation_steps`).
        generator (`torch.Generator`, *optional*):
            Source of randomness.
    """
    if any(length == 0 for length in lengths):
        raise ValueError("Modality lengths must be non-zero (positive: image rows, negative: text-only rows)")
    global_batch = batch_size * n_batches
    image = [i for i, length in enumerate(lengths) if length > 0]
    text = [i for i, length in enumerate(lengths) if length < 0]
    if not image or not text:  # a single modality: plain length grouping
        return [i for mb in _megabatches(image or text, lengths, global_batch, n_batches, generator) for i in mb]
    image_mbs = _megabatches(image, lengths, global_batch, n_batches, generator)
    text_mbs = _megabatches(text, lengths, global_batch, n_batches, generator)
    leftovers = (
        image_mbs.pop() + text_mbs.pop()
    )  # even when full: LLaVA's `mm_megabatches[-1]`, `lang_megabatches[-1]`
    rest = image_mbs + text_mbs
    rest = [rest[i] for i in torch.randperm(len(rest), generator=generator).tolist()]
    return [i for mb in rest for i in mb] + sorted(leftovers)


class ModalityLengthGroupedSampler(Sampler):
    """A sampler yielding `modality_grouped_indices`, reshuffled each epoch from `seed + epoch`.

    Args:
        lengths (`list[int]`): see `modality_grouped_indices`.
        batch_size (`int`): per-device batch size.
        n_batches (`int`): per-device batches in a global batch (`world_size * gradient_accumulation_steps`).
        seed (`int`, *optional*, defaults to `0`): the same on every rank.
    """

    def __init__(self, lengths: list[int], batch_size: int, n_batches: int, seed: int = 0):
        self.lengths, self.batch_size, self.n_batches, self.seed = lengths, batch_size, n_batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped_indices(self.lengths, self.batch_size, self.n_batches, generator))
