#!/usr/bin/env bash
# The device run behind docs/performance.md's Wan 2.2 and LTX-2 numbers (one H200 call, ≤ 600 s):
# JSON lines per case under $OUT, most important first so a timeout keeps what finished.
set -u
B="python bench/gpu_engines.py"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python -c "import torch, transformers, diffusers; print(torch.__version__, transformers.__version__, diffusers.__version__)" > "$OUT/versions.txt" 2>&1
timeout 150 $B --engines ltx2-distilled --vram full --soak 2 > "$OUT/ltx2_distilled_full.jsonl" 2> "$OUT/ltx2_distilled_full.err"
timeout 120 $B --engines wan --steps 2 --vram full,model-offload > "$OUT/wan.jsonl" 2> "$OUT/wan.err"
timeout 80 $B --engines ltx2 --steps 2 --vram full > "$OUT/ltx2_full.jsonl" 2> "$OUT/ltx2_full.err"
timeout 100 $B --engines ltx2-distilled --vram group-offload > "$OUT/ltx2_distilled_group.jsonl" 2> "$OUT/ltx2_distilled_group.err"
for f in "$OUT"/*.err; do tail -c 3000 "$f" > "$f.tail" && mv "$f.tail" "$f"; done
cat "$OUT"/*.jsonl
