#!/usr/bin/env bash
# A short check on a CUDA machine, run from the source tree (no install):
# train, then search with accelerator = "gpu" (a quantization Pareto search, a
# width search that fine-tunes every trial on the GPU, and a joint search with
# latency), and cross-check the "macro" accuracy against torchmetrics when it is
# installed. Packages the machine lacks can come as wheels: WHEELS=DIR.
#   [WHEELS=.whl] bash scripts/gpu_check.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export BITSMITH_CACHE="${BITSMITH_CACHE:-/tmp/bitsmith-cache}"
out="${1:-/tmp/bitsmith-gpu}"
rm -rf "$out"
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
ckpt="$out/digits-mlp_digits/checkpoints/best.ckpt"
time python3 -m bitsmith train digits-mlp digits --accelerator gpu --project-dir "$out"
time python3 -m bitsmith search --config configs/search_digits_quantize.toml --accelerator gpu \
  --load "$ckpt" --project-dir "$out"
time python3 -m bitsmith search --config configs/search_digits_channels.toml --accelerator gpu \
  --load "$ckpt" --project-dir "$out" --project channels
time python3 -m bitsmith search --config configs/search_digits_joint.toml --accelerator gpu \
  --load "$ckpt" --project-dir "$out" --project joint --n-trials 8
python3 - "$ckpt" <<'PY'
import sys
import torch
from bitsmith.checkpoint import load_checkpoint, restore
from bitsmith.data import get_dataset
from bitsmith.models import build_model
from bitsmith.train import evaluate

data = get_dataset("digits")
model = build_model("digits-mlp", data.in_shape, data.n_classes)
restore(model, load_checkpoint(sys.argv[1])[0], sys.argv[1], "digits-mlp")
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
model = model.to(device).eval()
ours = evaluate(model, data.test, device, average="macro")["accuracy"]
try:
    from torchmetrics.classification import MulticlassAccuracy
except ImportError:
    print(f"macro accuracy {ours:.6f} (torchmetrics not installed: no cross-check)")
    sys.exit(0)
with torch.no_grad():
    preds = model(data.test.x.to(device)).argmax(1)
ref = MulticlassAccuracy(num_classes=data.n_classes).to(device)(preds, data.test.y.to(device)).item()
print(f"macro accuracy: bitsmith {ours:.6f}, torchmetrics MulticlassAccuracy {ref:.6f}, "
      f"difference {abs(ours - ref):.2e}")
PY
