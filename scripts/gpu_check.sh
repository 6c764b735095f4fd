#!/usr/bin/env bash
# One prepared GPU check for a lent card (under 5 minutes): the tests marked `gpu`, then the benchmark on CUDA.
# Usage (repository root, venv active or packages installed): bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/kernelviz-gpu}}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
python -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); print('ort', o.__version__, o.get_available_providers())" | tee -a "$out/card.txt"
timeout 150 python -m pytest -q -m gpu tests 2>&1 | tee "$out/gpu_tests.txt"
timeout 200 python scripts/bench_explain.py --device cuda --widest --kernels 32 2>&1 | tee "$out/bench_gpu.txt"
