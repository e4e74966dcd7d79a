#!/usr/bin/env bash
# The GPU paths, checked in one go on a CUDA machine (docs/benchmarks.md records what it printed):
#   1. what torch and faiss see, and the profile the factories pick (expect "gpu");
#   2. the index factory on the GPU: exact search at 100k and 1M show vectors on the backend
#      picked for this machine, its recall measured against faiss's CPU brute force, and the
#      same search on the CPU (`--device cpu`) in the same script as the baseline;
#   3. the demo night on the GPU profile: every trainer under bf16 autocast with larger
#      batches, the MiniLM encoder fine-tuned, the index on the GPU; stage times, the run
#      record (a member that fails to train is left out with a warning there) and the demo's
#      last lines (planted near-duplicate first, the text query).
#
#   bash bench/gpu_check.sh [OUT_DIR]        # OUT_DIR: logs and the run record (default /tmp/gpu-check)
#   INDEX_SIZES=10000 DEMO_ARGS="--users 300 --shows 200 --events 20000" bash bench/gpu_check.sh
#                                            # a smaller run, to try the script itself on a CPU
#
# Needs the tvrec command (or `python -m tvrec.jobs.cli`) and a CUDA build of torch.
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu-check}}
mkdir -p "$out"
wd=$(mktemp -d /tmp/tvrec-gpu-demo.XXXX)
tvrec_cmd=(tvrec)
command -v tvrec >/dev/null || tvrec_cmd=(python3 -m tvrec.jobs.cli)
export PYTHONUNBUFFERED=1

echo "== 1. hardware"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 - <<'EOF'
import platform, torch, faiss
from tvrec.index.hardware import detect_hardware, pick_profile
from tvrec.models.runtime import Runtime
hw = detect_hardware()
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"faiss {faiss.__version__}")
print(f"hardware: {hw}")
print(f"index profile: {pick_profile('auto', hw)}; trainer runtime: {Runtime.detect('auto')}")
EOF

echo "== 2. index: exact search, GPU backend vs faiss CPU, 1,000 queries"
for device in auto cpu; do
    python3 bench/bench_index.py --device "$device" --sizes "${INDEX_SIZES:-100000,1000000}" --structures flat \
        --k 10,200 --repeats 5 | tee "$out/index_$device.txt"
done

echo "== 3. demo night on the GPU profile (work dir $wd)"
start=$(date +%s)
"${tvrec_cmd[@]}" demo -w "$wd" ${DEMO_ARGS:-} 2>&1 | tee "$out/demo.log"
echo "demo exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
nvidia-smi --query-gpu=memory.used --format=csv,noheader || true
python3 - "$wd" > "$out/run.json" <<'EOF'
import json, sys
from tvrec.jobs.catalog import Catalog
print(json.dumps(Catalog(sys.argv[1]).runs(1), indent=1, default=str))
EOF
head -c 3000 "$out/run.json"
