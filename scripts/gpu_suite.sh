#!/usr/bin/env bash
# On a bare GPU machine that received this repository (and the Omniglot zips in data/omniglot/,
# an ignored folder sent along with it): install the package, then run the paper-budget suite.
#   bash scripts/gpu_suite.sh OUT_DIR [MINUTES]
# Everything the suite writes (results JSON, logs, summary.json, install log) lands in OUT_DIR.
set -uo pipefail
out="${1:?usage: bash scripts/gpu_suite.sh OUT_DIR [MINUTES]}"
minutes="${2:-11}"
mkdir -p "$out"
start=$(date +%s)
python -m pip install -q -e ".[mujoco]" > "$out/install.log" 2>&1 || python -m pip install -q -e . >> "$out/install.log" 2>&1
export METACOURSE_INSTALL_SECONDS=$(( $(date +%s) - start ))
echo "install: ${METACOURSE_INSTALL_SECONDS} s" | tee -a "$out/install.log"
export METACOURSE_DATA="${METACOURSE_DATA:-$PWD/data}" MUJOCO_GL="${MUJOCO_GL:-egl}"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
python benchmarks/gpu_suite.py --minutes "$minutes" --out "$out" 2>&1 | tee "$out/suite.log"
