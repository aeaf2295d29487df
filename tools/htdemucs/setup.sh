#!/usr/bin/env bash
# Create .venv-htdemucs: CPU PyTorch + demucs 4.1.0 for the HTDemucs parity tooling.
#
# PyPI's only Linux x86_64 torch wheel is a CUDA build whose dependencies are several GB
# of nvidia-* wheels. We install it with --no-deps, then cpu_stubs.py writes tiny stub
# libraries for the NVIDIA sonames so that the dynamic loader is satisfied; nothing on a
# CPU code path ever calls them. Usage: bash tools/htdemucs/setup.sh  (from the repo root)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-htdemucs"
here="$root/tools/htdemucs"
py="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || nice -n 19 "$py" -m venv "$venv"
pip="$venv/bin/pip"
nice -n 19 "$pip" install -q -r "$here/requirements.txt"
nice -n 19 "$pip" install -q --no-deps torch==2.15.0 demucs==4.1.0 julius==0.2.7 openunmix==1.3.0
nice -n 19 "$venv/bin/python" "$here/cpu_stubs.py"
"$venv/bin/python" - <<'PY'
import torch
from demucs.htdemucs import HTDemucs  # noqa: F401
from demucs.apply import apply_model  # noqa: F401
x = torch.randn(2, 8192)
z = torch.stft(x, 4096, 1024, window=torch.hann_window(4096), return_complex=True)
print(f"torch {torch.__version__} on CPU: ok (stft {tuple(z.shape)})")
PY
