#!/usr/bin/env bash
# One prepared GPU check for a lent card (about 4 minutes): the tests marked `gpu`, then the benchmark on CUDA.
# Usage (repository root, packages importable): bash scripts/gpu_check.sh [OUT_DIR]
# PYTHON picks the interpreter (default: python, else python3).
set -uo pipefail
out=${1:-${OUT:-/tmp/kernelviz-gpu}}
py=${PYTHON:-$(command -v python || command -v python3)}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
"$py" -c "import torch, onnxruntime as o, onnx, onnx2torch; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else ''); print('onnx', onnx.__version__, 'ort', o.__version__, o.get_available_providers())" 2>&1 | tee -a "$out/card.txt"
timeout 150 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$out/gpu_tests.txt"
timeout 330 "$py" scripts/bench_explain.py --device cuda --kernels 32 --step-batches 32,128 --widest --widest-batches 64,auto 2>&1 \
    | tee "$out/bench_gpu.txt"
