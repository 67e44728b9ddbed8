# Quick start: `make demo` (whole pipeline on synthetic data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup test demo ablation compare bench clean

setup: $(INSTALLED)

# Create the virtual environment if it is missing and install the project with its dev extra.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e ".[dev]"
	touch $@

# Lint, format and type checks first (about 40 s), then the test files in parallel, one process per core; a file's tests
# stay together, so each trains its models once.
test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

demo: $(INSTALLED)
	$(BIN)/pneumo-yolo demo --out demo --overwrite

# Which of the RSNA winners' steps helps: a synthetic folder in the Kaggle layout, then the chain of
# `pneumo-yolo ablation --rsna` on it, scored on 600 held-out test images (docs/ablation.md; a rerun reuses what finished).
# 10.5 min measured on 2 idle cores.
ABLATION_DATA := ablation/rsna/stage_2_train_labels.csv

$(ABLATION_DATA): | $(INSTALLED)
	$(BIN)/pneumo-yolo synth --out ablation/rsna --n-train 960 --dicom-size 512 --preset hard --overwrite

ablation: $(ABLATION_DATA) | $(INSTALLED)
	$(BIN)/pneumo-yolo ablation --rsna ablation/rsna --out ablation --n-test 600

# YOLO11, YOLOv3, Faster R-CNN, Mask R-CNN and U-Net for 6 CPU-min each, two at a time on 2 cores, scored on held-out
# synthetic images (docs/compare.md). 20.8 min measured on 2 idle cores.
compare: $(INSTALLED)
	$(BIN)/pneumo-yolo compare --out compare --overwrite

bench: $(INSTALLED)
	$(BIN)/python bench/convert.py --n 200 1000 --imgsz 512
	$(BIN)/python bench/predict.py --n 100 1000 --imgsz 512
	$(BIN)/python bench/predict.py --null-model --n 1000 --imgsz 512
	$(BIN)/python bench/ensemble.py --n 200
	$(BIN)/python bench/metric.py
	$(BIN)/python bench/archs.py --n 64 --imgsz 256

clean:
	rm -rf demo ablation compare

# A real Orthanc and `pneumo-yolo listen` on the loopback: a few synthetic radiographs go through Orthanc's
# routing rule to the node, each study gets its SR (and GSPS) back; both servers stop at the end (docs/pacs.md).
# Needs Debian's orthanc and orthanc-dicomweb; uses `make demo`'s model if there is one, else trains a small one.
.PHONY: pacs-demo
pacs-demo: $(INSTALLED)
	$(BIN)/python scripts/pacs_demo.py --out pacs-demo
