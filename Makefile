# Quick start: `make demo` (whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(INSTALLED)

# Create the virtual environment if it is missing and install the project with its dev extra.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[dev]"
	touch $@

test: $(INSTALLED)
	$(BIN)/python -m pytest -q

demo: $(INSTALLED)
	$(BIN)/pneumo-yolo synth --out demo/rsna --n 300 --n-test 60 --seed 0
	$(BIN)/pneumo-yolo convert --images demo/rsna/stage_2_train_images --labels demo/rsna/stage_2_train_labels.csv \
		--class-info demo/rsna/stage_2_detailed_class_info.csv --out demo/dataset --imgsz 320

bench: $(INSTALLED)
	$(BIN)/python bench/convert.py

clean:
	rm -rf demo
