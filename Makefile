# lstm-onnx-pipeline: train -> export -> verify, chained by files so nothing reruns needlessly.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; an unpinned torch pulls a CUDA build of several GB. Override to taste.
TORCH_SPEC ?= torch==2.13.0
ART ?= artifacts
CONFIG ?=
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/lstm-pipeline

.PHONY: demo test test-gpu train export verify install clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo     train -> export -> verify on the built-in task (creates $(VENV))"
	@echo "make test     run the test suite"
	@echo "make train | export | verify   one step of the chain"
	@echo "make test-gpu GPU tests (need CUDA + onnxruntime-gpu)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,serve,plots,build,openvino]"
	touch $@

install: $(VENV)/.installed

$(ART)/model.pt: $(VENV)/.installed $(CONFIG)
	$(CLI) train $(if $(CONFIG),--config $(CONFIG)) -o $@

$(ART)/model.onnx: $(ART)/model.pt
	$(CLI) export $< -o $@

$(ART)/parity.json: $(ART)/model.pt $(ART)/model.onnx
	$(CLI) verify $^ --json > $@.tmp || (cat $@.tmp; rm -f $@.tmp; exit 1)
	mv $@.tmp $@

train: $(ART)/model.pt
export: $(ART)/model.onnx
verify: $(ART)/parity.json

demo: $(ART)/model.onnx
	$(CLI) inspect $(ART)/model.onnx
	$(CLI) verify $(ART)/model.pt $(ART)/model.onnx

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-gpu: $(VENV)/.installed
	$(PY) -m pytest -q -m gpu

clean:
	rm -rf $(ART)
