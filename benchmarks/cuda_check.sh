#!/usr/bin/env bash
# The CUDA check, for a machine with a GPU and torch installed (no network needed):
# the CUDA tests, every problem/network/variant/method on the GPU, a Helmholtz run of each of
# AutoBalance and Adam on the GPU, and the step-time ratios there.
#     bash benchmarks/cuda_check.sh [OUT_DIR]
set -uo pipefail
out=${1:-cuda-check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" AUTOBALANCE_NO_REEXEC=1 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
workers=$($py -c "import importlib.util as u; print('-n 8' if u.find_spec('xdist') else '')")
$py -m pytest -q -p no:cacheprovider $workers tests/test_cuda.py tests/test_run_matrix.py \
    2>&1 | tee "$out/cuda_tests.log" | tail -25
for method in adam autobalance; do
    $py -m autobalance run helmholtz --method "$method" --device cuda --steps 3000 \
        --no-progress --out "/tmp/cuda-run-$method" 2>&1 | tail -6
done
$py benchmarks/step_time.py --device cuda --rounds 5 --threads 4 --batched --json "$out/step_time_cuda.json" \
    2>&1 | tail -30
