#!/usr/bin/env bash
# For a person with an NVIDIA GPU: loads tiny checkpoints and the embedded model with device_map="auto"
# on the GPU, checks greedy answers equal the CPU's, prints tokens/s, then prints the plan for the
# visible GPUs. Uses the project's venv (make setup-dev creates it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "no $PY: run 'make setup-dev' first (or set PY=python)"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
HF_HUB_OFFLINE=1 "$PY" -m pytest tests/test_gpu.py -m gpu -s -q -p no:cacheprovider  # includes 1 vs 16 streams on CUDA
"$PY" -m models plan --lineup llama2
