"""LLaVA's `group_by_modality_length` semantics (hub_llava.training.sampler)."""

import random

import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from torch.utils.data import BatchSampler

from hub_llava.training.sampler import ModalityLengthGroupedSampler, modality_grouped_indices


def mixed_lengths(n_image=53, n_text=29, seed=0):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 400) for _ in range(n_image)] + [-rng.randint(5, 900) for _ in range(n_text)]
    rng.shuffle(lengths)
    return lengths


def test_each_row_once_and_every_full_global_batch_single_modality():
    lengths = mixed_lengths()
    batch_size, n_batches = 2, 4  # global batch of 8
    order = modality_grouped_indices(lengths, batch_size, n_batches, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    global_batch = batch_size * n_batches
    # 53 image rows -> 6 full megabatches + 5 left over; 29 text rows -> 3 full + 5 left over.
    full, leftovers = order[: 9 * global_batch], order[9 * global_batch :]
    for start in range(0, len(full), global_batch):
        signs = {lengths[i] > 0 for i in full[start : start + global_batch]}
        assert len(signs) == 1
    assert sum(lengths[i] > 0 for i in leftovers) == 5 and sum(lengths[i] < 0 for i in leftovers) == 5
    assert leftovers == sorted(leftovers)  # LLaVA appends the mixed leftovers sorted


def test_megabatch_sorted_longest_first_and_dealt_evenly():
    lengths = [10, 20, 30, 40, 50, 60, 70, 80]  # one image megabatch of 8, 4 per-device batches of 2
    order = modality_grouped_indices(lengths, batch_size=2, n_batches=4, generator=torch.Generator().manual_seed(1))
    batches = [order[i : i + 2] for i in range(0, 8, 2)]
    totals = sorted(sum(lengths[i] for i in batch) for batch in batches)
    assert totals == [90, 90, 90, 90]  # 80+10, 70+20, ...: balanced across devices
    assert [lengths[i] for i in order[::2]] == [80, 70, 60, 50]  # longest first, dealt one per device


def test_order_is_seeded_same_on_every_rank_and_reshuffled_each_epoch():
    lengths = mixed_lengths()
    sampler_a = ModalityLengthGroupedSampler(lengths, batch_size=2, n_batches=2, seed=7)
    sampler_b = ModalityLengthGroupedSampler(lengths, batch_size=2, n_batches=2, seed=7)
    assert list(sampler_a) == list(sampler_b)
    first = list(sampler_a)
    sampler_a.set_epoch(1)
    assert list(sampler_a) != first and sorted(sampler_a) == sorted(first)
    assert len(sampler_a) == len(lengths)


def test_accelerate_sharding_gives_all_ranks_one_modality_per_step_but_the_last_two():
    lengths = mixed_lengths(n_image=40, n_text=24)
    batch_size, world_size = 2, 2
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=batch_size, n_batches=world_size, seed=3)
    shards = [
        list(BatchSamplerShard(BatchSampler(sampler, batch_size, drop_last=False), world_size, rank))
        for rank in range(world_size)
    ]
    steps = list(zip(*shards))
    assert len(steps) == len(lengths) // (batch_size * world_size)
    for step in steps[:-2]:
        modalities = {lengths[i] > 0 for batch in step for i in batch}
        assert len(modalities) == 1
    # 40 and 24 are multiples of 4, yet the last (full) megabatch of each modality goes to the mixed tail, as in LLaVA
    tail = [i for step in steps[-2:] for batch in step for i in batch]
    assert sum(lengths[i] > 0 for i in tail) == 4 and sum(lengths[i] < 0 for i in tail) == 4


def test_a_full_last_megabatch_of_each_modality_moves_to_the_mixed_tail():
    lengths = [10 + i for i in range(16)] + [-(10 + i) for i in range(8)]  # 2 + 1 full megabatches of 8, nothing left
    order = modality_grouped_indices(lengths, batch_size=2, n_batches=4, generator=torch.Generator().manual_seed(0))
    head, tail = order[:8], order[8:]
    assert all(lengths[i] > 0 for i in head)  # the one image megabatch that stays (there is no other text one)
    assert tail == sorted(tail) and sum(lengths[i] < 0 for i in tail) == 8  # 8 image + 8 text rows, index order


def llava_modality_grouped_indices(lengths, batch_size, world_size, generator):
    """An independent transcription of LLaVA's `get_modality_length_grouped_indices` (DESIGN.md section 3), with
    LLaVA's `world_size` = devices x accumulation steps. LLaVA draws from torch's global RNG; here every draw takes
    `generator`, in LLaVA's order (image rows, text rows, then the megabatch shuffle)."""

    def split_to_even_chunks(indices, lens, num_chunks):
        if len(indices) % num_chunks != 0:
            return [indices[i::num_chunks] for i in range(num_chunks)]
        per_chunk = len(indices) // num_chunks
        chunks, chunk_lengths = [[] for _ in range(num_chunks)], [0] * num_chunks
        for index in indices:
            shortest = chunk_lengths.index(min(chunk_lengths))
            chunks[shortest].append(index)
            chunk_lengths[shortest] += lens[index]
            if len(chunks[shortest]) == per_chunk:
                chunk_lengths[shortest] = float("inf")
        return chunks

    def length_grouped(lens):
        indices = torch.randperm(len(lens), generator=generator).tolist()
        size = world_size * batch_size
        megabatches = [indices[i : i + size] for i in range(0, len(lens), size)]
        megabatches = [sorted(mb, key=lambda i: lens[i], reverse=True) for mb in megabatches]
        return [i for mb in megabatches for chunk in split_to_even_chunks(mb, lens, world_size) for i in chunk]

    if all(length > 0 for length in lengths):
        return length_grouped(lengths)
    mm_indices, mm_lengths = zip(*[(i, length) for i, length in enumerate(lengths) if length > 0])
    lang_indices, lang_lengths = zip(*[(i, -length) for i, length in enumerate(lengths) if length < 0])
    mm_shuffle = [mm_indices[i] for i in length_grouped(mm_lengths)]
    lang_shuffle = [lang_indices[i] for i in length_grouped(lang_lengths)]
    size = world_size * batch_size
    mm_megabatches = [mm_shuffle[i : i + size] for i in range(0, len(mm_shuffle), size)]
    lang_megabatches = [lang_shuffle[i : i + size] for i in range(0, len(lang_shuffle), size)]
    additional_batch = mm_megabatches[-1] + lang_megabatches[-1]
    megabatches = mm_megabatches[:-1] + lang_megabatches[:-1]
    megabatches = [megabatches[i] for i in torch.randperm(len(megabatches), generator=generator)]
    megabatches.append(sorted(additional_batch))
    return [i for megabatch in megabatches for i in megabatch]


@pytest.mark.parametrize(
    "n_image, n_text, batch_size, n_batches",
    [(53, 29, 2, 4), (40, 24, 2, 2), (16, 8, 2, 4), (7, 30, 3, 2), (5, 3, 4, 4), (64, 16, 1, 8), (12, 0, 2, 2)],
)
def test_order_equals_llavas_for_the_same_random_draws(n_image, n_text, batch_size, n_batches):
    for seed in range(5):
        lengths = mixed_lengths(n_image, n_text, seed)
        ours = modality_grouped_indices(lengths, batch_size, n_batches, torch.Generator().manual_seed(seed))
        theirs = llava_modality_grouped_indices(lengths, batch_size, n_batches, torch.Generator().manual_seed(seed))
        assert ours == theirs


def test_single_modality_dataset_is_plain_length_grouping():
    lengths = [5, 9, 3, 7, 1, 8]
    order = modality_grouped_indices(lengths, 3, 1, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(6))
    for start in (0, 3):
        chunk = [lengths[i] for i in order[start : start + 3]]
        assert chunk == sorted(chunk, reverse=True)


def test_zero_length_is_refused():
    with pytest.raises(ValueError, match="non-zero"):
        modality_grouped_indices([3, 0, -2], 1, 1)
