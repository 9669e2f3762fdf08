#!/usr/bin/env bash
# One command for a machine with one GPU (< 8 minutes, nothing installed from the network): stage-2 training steps of
# a LLaVA-1.5-7B-shaped model with 4 layers and random weights (bf16), padded vs padding-free, with sdpa and, when
# flash-attn is installed, flash_attention_2; prints tokens/s, padding fraction, peak memory and MFU. See
# bench/gpu_check.py. Needs torch (CUDA), transformers, pillow, numpy and tokenizers: a GPU image with torch and
# transformers has them all. trl and datasets are not needed (nothing here imports them).
#
#   bench/gpu_check.sh [--layers 4] [--steps 30] [--rows 16] [--peak_tflops 989]
#
# Expected output: a header line, one line per attention implementation and layout, a ratio line per implementation,
# then the same figures as JSON (T, M, U, L: what the GPU gives; P: exact, from the row lengths alone, and printed
# without a GPU by `python bench/gpu_check.py --padding_only`):
#   device: NVIDIA H200; bf16 peak: 989.0 TFLOP/s; 4 layers; 16 rows/step
#                sdpa       padded: T tokens/s, padding P%, peak memory M GiB, MFU U%
#                sdpa padding_free: T tokens/s, padding P%, peak memory M GiB, MFU U%
#   sdpa: padding-free tokens/s xR of padded; last loss L vs L (same rows, same init; bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "error: no GPU (nvidia-smi failed)" >&2; exit 1; }
"$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
time timeout 470 "$PYTHON" bench/gpu_check.py "$@"  # the 8 minutes the check may take, at most
