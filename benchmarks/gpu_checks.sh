#!/usr/bin/env bash
# The GPU checks, run on a lent GPU machine from the repository root:
#   bash benchmarks/gpu_checks.sh
# That machine's python3 has torch, lightning and torchmetrics but none of lossopt's
# other dependencies and no registry: lossopt and the rest travel as wheels in .whl/
# (`pip wheel --no-deps . -w .whl` plus `pip download --no-deps --only-binary=:all:`
# of what is missing, for its Python). Prints the GPU, runs tests/test_gpu.py, then the
# sweep benchmark's GPU workloads; logs go to $OUT (or /tmp/gpu-checks).
set -u
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/sweep_throughput.py --workload gpu --repeats 1 \
    2>&1 | tee "$out/bench.log"
timeout "${TEST_TIMEOUT:-180}" python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py \
    2>&1 | tee "$out/test_gpu.log"
