#!/usr/bin/env bash
# One command for a machine with one GPU (< 8 minutes): a 7B-shaped LLaVA with 2 layers and random weights is made on
# the spot, then POPE-shaped questions are answered by the HF backend at batch 1 and 16 and, when vLLM is installed
# (pip install hub_llava[vllm]), by the vllm backend; prints questions/s and parity. See bench/gpu_eval.py.
#
#   bench/gpu_eval.sh [--layers 2] [--questions 256] [--output_dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export PATH="$(dirname "$PYTHON"):$PATH"  # the hub-llava of the same environment
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "error: no GPU (nvidia-smi failed)" >&2; exit 1; }
"$PYTHON" -c "import hub_llava, torch; print('hub_llava', hub_llava.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
time "$PYTHON" bench/gpu_eval.py "$@"
