"""LLaVA-1.5's `group_by_modality_length` sampler: every global batch all-image or all-text; and its token-budget
variant for padding-free batches (`TokenBudgetBatchSampler`, at the end).

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


def _fill(order: list[int], tokens: list[int], max_tokens: int, window_tokens: int, sort: bool) -> list[list[int]]:
    """Next-fit: each batch takes rows in `order` until the next would push it past `max_tokens`.

    With `sort`, `order` is first cut into windows of about `window_tokens` (one global step's budget) and each window
    sorted longest first, as the fixed-size sampler sorts its megabatches; a batch runs on across window boundaries.
    Measured on a mix665k-like length mix (BENCHMARKS.md): no fewer batches than the shuffled order, and the batches
    of a step then differ more in attention cost (long rows together), so it is off by default.
    """
    if sort:
        windows, window, total = [], [], 0
        for index in order:
            window.append(index)
            total += tokens[index]
            if total >= window_tokens:
                windows.append(window)
                window, total = [], 0
        windows.append(window)
        order = [i for window in windows for i in sorted(window, key=lambda i: tokens[i], reverse=True)]
    batches, batch, total = [], [], 0
    for index in order:
        if batch and total + tokens[index] > max_tokens:
            batches.append(batch)
            batch, total = [], 0
        batch.append(index)
        total += tokens[index]
    return batches + [batch] if batch else batches


def _grow(groups: list[list[list[int]]], n_total: int) -> None:
    """Adds batches to `groups` (one batch list per modality) until they hold `n_total`: the batch with the most rows
    is cut in two halves (no row repeats); when every batch is a single row, the first batches are repeated."""
    n = sum(len(batches) for batches in groups)
    if n > n_total:
        raise RuntimeError(f"the token budget gave {n} batches, more than the {n_total} planned for every epoch")
    for extra in range(n_total - n):
        g, b = max(((g, b) for g, batches in enumerate(groups) for b in range(len(batches))),
                   key=lambda gb: len(groups[gb[0]][gb[1]]))  # fmt: skip
        batch = groups[g][b]
        if len(batch) > 1:
            groups[g][b : b + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
        else:  # nothing left to split: repeat rows, as accelerate's `even_batches` loops back
            groups[0].append(list(groups[0][extra % len(groups[0])]))


def token_budget_batches(
    tokens: list[int],
    modality_lengths: list[int],
    max_tokens: int,
    n_batches: int,
    generator=None,
    n_total: int | None = None,
    sort: bool = False,
) -> list[list[int]]:
    """The per-device batches of one epoch under a token budget, in the order the ranks take them.

    Image rows and text-only rows are shuffled separately and filled into batches of at most `max_tokens` tokens
    within their modality (`_fill`). Each modality's batches are cut into global steps of `n_batches` batches; the
    steps of both are shuffled together and each modality's incomplete remainder comes last (the one step that mixes
    them, LLaVA's tail; a modality whose batches fill whole steps leaves none). With `n_total`, batches are first cut
    in two (`_grow`) until there are exactly `n_total`.

    Args:
        tokens (`list[int]`):
            Per row: its tokens in the batch (after image expansion and truncation).
        modality_lengths (`list[int]`):
            Per row: positive for rows with an image, negative for text-only rows (the sign is all that is read).
        max_tokens (`int`):
            Token budget of one per-device batch.
        n_batches (`int`):
            Per-device batches in a global step (`world_size * gradient_accumulation_steps`).
        generator (`torch.Generator`, *optional*):
            Source of randomness.
        n_total (`int`, *optional*):
            Number of batches to return.
        sort (`bool`, *optional*, defaults to `False`):
            Sort windows of one step's budget by length before filling (`_fill`; measured, it does not pack tighter).
    """
    if any(length == 0 for length in modality_lengths):
        raise ValueError("Modality lengths must be non-zero (positive: image rows, negative: text-only rows)")
    too_long = next((i for i, n in enumerate(tokens) if n > max_tokens), None)
    if too_long is not None:
        raise ValueError(
            f"row {too_long} has {tokens[too_long]} tokens, more than max_tokens_per_batch ({max_tokens}): raise "
            "max_tokens_per_batch or set max_length to at most it"
        )
    groups = []
    for sign in (1, -1):
        rows = [i for i, length in enumerate(modality_lengths) if length * sign > 0]
        if rows:
            order = [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            groups.append(_fill(order, tokens, max_tokens, n_batches * max_tokens, sort))
    if n_total is not None:
        _grow(groups, n_total)
    steps, tail = [], []
    for batches in groups:
        full = len(batches) - len(batches) % n_batches
        steps += [batches[start : start + n_batches] for start in range(0, full, n_batches)]
        tail += batches[full:]
    steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
    return [batch for step in steps for batch in step] + tail


class TokenBudgetBatchSampler(Sampler):
    """A batch sampler yielding `token_budget_batches`, reshuffled each epoch from `seed + epoch`.

    Every rank computes the same batches; accelerate's `BatchSamplerShard` hands rank r every `world_size`-th one from
    the r-th on. The number of batches is fixed at construction, the same in every epoch (the Trainer reads it once
    for `max_steps` and the schedule) and a multiple of `world_size` (every rank gets as many): the most that any of
    the first `epochs` epochs fills, rounded up to that multiple; each epoch that fills fewer cuts batches in two
    until it has as many (`_grow`). It has no `batch_size`: accelerate then takes its batches as they come.

    Args:
        tokens (`list[int]`): per row, its tokens in the batch (see `token_budget_batches`).
        modality_lengths (`list[int]`): per row, positive with an image, negative text-only.
        max_tokens (`int`): token budget of one per-device batch.
        n_batches (`int`): per-device batches in a global step (`world_size * gradient_accumulation_steps`).
        world_size (`int`, *optional*, defaults to `1`): data-parallel ranks.
        seed (`int`, *optional*, defaults to `0`): the same on every rank.
        epochs (`int`, *optional*, defaults to `1`): epochs the run will train, over which the batch count is fixed.
    """

    def __init__(
        self,
        tokens: list[int],
        modality_lengths: list[int],
        max_tokens: int,
        n_batches: int,
        world_size: int = 1,
        seed: int = 0,
        epochs: int = 1,
    ):
        if len(tokens) != len(modality_lengths):
            raise ValueError(f"{len(tokens)} token counts for {len(modality_lengths)} rows")
        self.tokens, self.modality_lengths, self.max_tokens = tokens, modality_lengths, max_tokens
        self.n_batches, self.seed, self.epoch = n_batches, seed, 0
        most = max(len(self._batches(epoch, None)) for epoch in range(max(1, epochs)))
        self.n_total = -(-most // world_size) * world_size

    def _batches(self, epoch: int, n_total: int | None) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return token_budget_batches(
            self.tokens, self.modality_lengths, self.max_tokens, self.n_batches, generator, n_total
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_total

    def __iter__(self):
        return iter(self._batches(self.epoch, self.n_total))
