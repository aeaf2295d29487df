#!/usr/bin/env bash
# Add the fine-tuning tools to training/.venv (run training/setup.sh first): CPU PyTorch 2.15.0
# (PyPI's CUDA wheel with --no-deps plus stub NVIDIA libraries, as tools/htdemucs does), onnx,
# onnxruntime. Idempotent; checks the result by importing everything.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
NICE="nice -n 19"
[ -x "$HERE/.venv/bin/python" ] || bash "$HERE/setup.sh"
PIP="$HERE/.venv/bin/pip"
$NICE "$PIP" install -q --disable-pip-version-check -r "$HERE/requirements.txt" -r "$HERE/requirements-train.txt"
$NICE "$PIP" install -q --disable-pip-version-check --no-deps torch==2.15.0
$NICE "$HERE/.venv/bin/python" "$HERE/../tools/htdemucs/cpu_stubs.py" >/dev/null
"$HERE/.venv/bin/python" - <<'PY'
import numpy, onnx, onnxruntime, scipy, torch
x = torch.randn(2, 4800)
torch.fft.rfft(x)
print(f"torch {torch.__version__} (CPU), onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"numpy {numpy.__version__}: ok")
PY
