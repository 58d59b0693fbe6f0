# lstm-onnx-pipeline: train -> export -> verify, chained by files so nothing reruns needlessly.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; an unpinned torch pulls a CUDA build of several GB. Override to taste.
TORCH_SPEC ?= torch==2.13.0
ART ?= artifacts
CONFIG ?=
# One folder of artifacts per config, named by its file's stem: CONFIG=configs/co2.toml -> $(ART)/co2/model.pt.
# Without CONFIG (the built-in task) they stay in $(ART) itself, where the CLI's defaults and the README look.
RUN_DIR := $(if $(CONFIG),$(ART)/$(basename $(notdir $(CONFIG))),$(ART))
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/lstm-pipeline

.PHONY: demo test fuzz test-gpu bench forms-report train export verify install clean help serve loadtest node-deps web-deps experiment-peepholes report docs-figures bench-train loadtest-protocols
.DEFAULT_GOAL := help

help:
	@echo "make demo     train -> export -> verify on the built-in task (creates $(VENV))"
	@echo "make test     run the test suite (with a fast, seeded slice of the bad-input harness)"
	@echo "make fuzz     the bad-input and fault harness, longer (FUZZ_SCALE=5, about a quarter hour on 2 cores); prints cases tried, clean errors, failures"
	@echo "make install-sizes  installed MB of the deploy install (no torch) and of [full], in fresh venvs"
	@echo "make report   test metrics + plots (loss, forecast vs actual) of $(RUN_DIR)/model.pt -> $(RUN_DIR)/report/"
	@echo "make experiment-peepholes  peephole vs plain LSTM, timing task + CO2, several seeds -> $(ART)/peepholes/"
	@echo "make docs-figures  rerun the experiment + a CO2 report; splice its table into docs/experiments.md, PNGs to docs/img/"
	@echo "make docs-bench | docs-forms | docs-runtimes | docs-serving  measure, then splice the result into docs/*.md"
	@echo "make train | export | verify   one step of the chain, in $(RUN_DIR)/ (CONFIG=configs/x.toml: $(ART)/x/)"
	@echo "make test-gpu GPU tests (need CUDA + onnxruntime-gpu)"
	@echo "make bench    runner x form x threads benchmark -> $(ART)/bench/ (table, JSON, PNG)"
	@echo "make bench-train  one training step of PeepholeLSTM (compiled and pure PyTorch) vs nn.LSTM"
	@echo "make bench-contention  default threads vs 1/2 x active/passive waiting, idle and with a busy process"
	@echo "make bench-ddp    data-parallel training: 1 process x 2 threads vs 2 processes x 1 thread"
	@echo "make bench-data   check-data on a 1M-row and a 20,000-column CSV (goal: 30 s each)"
	@echo "make bench-abuse  server RSS through session-id and 4 MiB body floods, /healthz p50/p99 under 200 clients"
	@echo "make forms-report  nodes, file size, ORT CPU latency, fp16/int8 accuracy of every export form"
	@echo "make serve    HTTP server on 127.0.0.1:8000 (SERVE_ARGS=...); make loadtest: lstm-pipeline loadtest against it"
	@echo "make loadtest-protocols  our server over v1 JSON, v2 JSON, v2 binary, gRPC and gRPC streaming, Triton, Ray x1 and x2, each next to Predictor's own throughput (served/model): one run"
	@echo "make test-web  the page in examples/web in headless Chromium (onnxruntime-web), and the Node.js example"
	@echo "make docs-embedding  one parity table for Predictor, .ort, Node.js and the browser -> docs/embedding.md"
	@echo "make triton-venv | test-triton  tritonserver (nvidia-pytriton, CPU) in $(TRITON_VENV); a real run of our python-backend repository"

# setuptools: the build backend, which tests/test_packaging.py uses to build the wheel offline.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77"
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,full]"
	touch $@

install: $(VENV)/.installed

# Installed size (MB of site-packages) of the deploy install (no torch) and of [full] with the CPU torch,
# each in a fresh venv without pip (README "Install"). Downloads what pip's cache lacks.
SIZES_DIR ?= $(ART)/install-sizes
.PHONY: install-sizes
install-sizes:
	rm -rf $(SIZES_DIR)
	$(PYTHON) -m venv --without-pip $(SIZES_DIR)/deploy
	$(PYTHON) -m venv --without-pip $(SIZES_DIR)/full
	$(PYTHON) -m pip --python $(SIZES_DIR)/deploy/bin/python install -q .
	$(PYTHON) -m pip --python $(SIZES_DIR)/full/bin/python install -q "$(TORCH_SPEC)" ".[full]"
	du -sm $(SIZES_DIR)/deploy/lib/python*/site-packages $(SIZES_DIR)/full/lib/python*/site-packages

$(RUN_DIR)/model.pt: $(VENV)/.installed $(CONFIG)
	$(CLI) train $(if $(CONFIG),--config $(CONFIG)) -o $@

$(RUN_DIR)/model.onnx: $(RUN_DIR)/model.pt
	$(CLI) export $< -o $@

$(RUN_DIR)/parity.json: $(RUN_DIR)/model.pt $(RUN_DIR)/model.onnx
	$(CLI) verify $^ --json > $@.tmp || (cat $@.tmp; rm -f $@.tmp; exit 1)
	mv $@.tmp $@

train: $(RUN_DIR)/model.pt
export: $(RUN_DIR)/model.onnx
verify: $(RUN_DIR)/parity.json

# The demo ends with three lines: what was trained, what the OpenVINO row means, what to try next.
demo: $(RUN_DIR)/model.onnx
	$(CLI) inspect $(RUN_DIR)/model.onnx
	$(CLI) verify $(RUN_DIR)/model.pt $(RUN_DIR)/model.onnx
	@echo "Trained: $(RUN_DIR)/model.pt, a peephole LSTM on $(if $(CONFIG),$(CONFIG),the built-in task (configs/seed.toml: 10 synthetic series, next step)); exported to $(RUN_DIR)/model.onnx and checked above against PyTorch on every runtime here."
	@echo "The openvino-cpu XFAIL row is the project catching a real runtime bug, not a failed demo: OpenVINO reads the peepholes (P) and drops them, so its outputs are wrong with no error. For OpenVINO: $(CLI) export $(RUN_DIR)/model.pt --target openvino-cpu --form auto -o $(RUN_DIR)/model-openvino.onnx (the decomposed form, which it computes right)."
	@echo "Next: . $(VENV)/bin/activate, then lstm-pipeline train --csv YOUR.csv --target COL (docs/tasks.md), lstm-pipeline serve $(RUN_DIR)/model.onnx, or README 'Using it from Python'."

test: $(VENV)/.installed node-deps
	$(PY) -m pytest -q

# The harness alone, longer: FUZZ_SCALE times the fast slice's loops, hypothesis's long profile. Ends with the
# figures (cases tried, clean errors, failures).
FUZZ_SCALE ?= 5
fuzz: $(VENV)/.installed
	FUZZ_SCALE=$(FUZZ_SCALE) HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m harness

test-gpu: $(VENV)/.installed
	$(PY) -m pytest -q -m gpu

# A few minutes on 2 cores. BENCH_ARGS="--provider cpu --provider cuda" on a GPU machine.
BENCH_ARGS ?=
bench: $(VENV)/.installed
	$(CLI) bench -o $(ART)/bench $(BENCH_ARGS)

# One training step (forward + backward) of PeepholeLSTM against nn.LSTM, at the two sizes of issue 6.
bench-train: $(VENV)/.installed
	mkdir -p $(ART)
	$(PY) -m benchmarks.bench_train --runs 9 --json $(ART)/bench_train.json $(BENCH_TRAIN_ARGS)

# The default thread settings against 1/2 threads x active/passive waiting, idle and next to one spinning process.
.PHONY: bench-contention
bench-contention: $(VENV)/.installed
	mkdir -p $(ART)
	$(PY) -m benchmarks.bench_contention --json $(ART)/bench_contention.json $(BENCH_CONTENTION_ARGS)

# Data-parallel training: 1 process x 2 threads vs 2 processes x 1 thread (DDP, gloo) at bench-train's sizes.
.PHONY: bench-ddp
bench-ddp: $(VENV)/.installed
	mkdir -p $(ART)
	$(PY) -m benchmarks.bench_ddp --json $(ART)/bench_ddp.json $(BENCH_DDP_ARGS)

# check-data on 1,000,000 rows x 10 columns and on 5 rows x 20,000 columns (generated once): each within 30 s.
.PHONY: bench-data
bench-data: $(VENV)/.installed
	$(PY) -m benchmarks.bench_data --dir $(ART)/bench_data $(BENCH_DATA_ARGS)

forms-report: $(RUN_DIR)/model.pt
	$(PY) benchmarks/forms.py $< --json $(RUN_DIR)/forms.json $(FORMS_ARGS)

# Serving: one model with h0/c0 (sessions) and lengths (padded batches).
$(RUN_DIR)/model-serve.onnx: $(RUN_DIR)/model.pt
	$(CLI) export $< -o $@ --stateful --lengths

SERVE_ARGS ?=
serve: $(RUN_DIR)/model-serve.onnx
	$(CLI) serve $< $(SERVE_ARGS)

# lstm-pipeline loadtest against our server, started for the run (any v2 server: lstm-pipeline loadtest URL).
LOADTEST_ARGS ?= --concurrency 1,16,64 --seconds 10
loadtest: $(RUN_DIR)/model-serve.onnx
	$(CLI) loadtest --start $< $(LOADTEST_ARGS)

# benchmarks/abuse_figures.py: server RSS through session-id and 4 MiB body floods, /healthz under 200 clients.
ABUSE_ARGS ?=
.PHONY: bench-abuse
bench-abuse: $(RUN_DIR)/model-serve.onnx
	$(PY) benchmarks/abuse_figures.py $< $(ABUSE_ARGS)

# benchmarks/loadtest.py: servers in several modes and engines side by side (batching on vs off, Triton, Ray).
BENCH_LOAD_ARGS ?= --clients 64 --seconds 10

# docs/deploy.md's table: our server, Triton (python backend, its own venv) and Ray Serve, on one machine in one run,
# every row's throughput over Predictor's own at batch 64 (measured at the start and the end of the run).
loadtest-protocols: $(RUN_DIR)/model-serve.onnx triton-venv
	LSTM_TRITON_VENV=$(abspath $(TRITON_VENV)) $(PY) benchmarks/loadtest.py $< --target v1 --target v2 \
	    --target v2-binary --target grpc --target grpc-stream --target triton --target ray --modes "batching on" \
	    --json $(RUN_DIR)/loadtest-protocols.json $(BENCH_LOAD_ARGS)

# Triton: the tritonserver binary nvidia-pytriton bundles (CPU), in its own venv (about 30 s, 445 MB); the python
# backend's stub runs this venv's Python, so numpy < 2 and onnxruntime go in it too. test-triton starts it on
# loopback with python-backend repositories (serving/triton_python_repo.py); without the venv the tests skip.
TRITON_VENV ?= .venv-triton
$(TRITON_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q nvidia-pytriton==0.7.0 "numpy<2" onnxruntime
	touch $@

.PHONY: triton-venv test-triton
triton-venv: $(TRITON_VENV)/.installed

test-triton: $(VENV)/.installed triton-venv
	LSTM_TRITON_VENV=$(abspath $(TRITON_VENV)) $(PY) -m pytest -q tests/serving/test_triton_python_repo.py tests/serving/test_triton_server.py

# --ignore-scripts: onnxruntime-node ships its CPU binary, and its postinstall would only fetch CUDA binaries from
# outside the registry (npm 11 warns about an unknown --onnxruntime-node-install flag, and about unapproved install
# scripts; this installs with neither warning). Without npm the Node.js and browser tests skip and say why.
NPM_CI := npm ci --no-audit --no-fund --ignore-scripts
NODE_DIR := examples/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && $(NPM_CI)
	touch $@

node-deps:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(NODE_DIR)/node_modules/.installed; \
	else echo "npm not found: the Node.js parity test will be skipped"; fi

# The browser: onnxruntime-web (WASM) and playwright-core from npm, served from examples/web/node_modules (no CDN),
# driven in Debian's headless Chromium (installed with apt where it is missing and we are root).
WEB_DIR := examples/web
$(WEB_DIR)/node_modules/.installed: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && $(NPM_CI)
	touch $@

.PHONY: web-deps test-web docs-embedding
web-deps: node-deps
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(WEB_DIR)/node_modules/.installed; \
	else echo "npm not found: the browser tests will be skipped"; fi
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium not found (apt-get install chromium as root): the browser tests will be skipped"; fi; \
	fi

test-web: $(VENV)/.installed web-deps
	$(PY) -m pytest -q tests/examples/test_web_page.py tests/examples/test_node_parity.py

# docs/embedding.md's parity table: Predictor, .ort in Python, Node and the browser on the same inputs.
docs-embedding: $(RUN_DIR)/model.pt web-deps
	mkdir -p $(RUN_DIR)/embedding
	$(PY) -m benchmarks.embedding_parity --checkpoint $< -o $(RUN_DIR)/embedding --screenshot docs/img/web-page.png \
	    > $(RUN_DIR)/embedding/parity.md
	$(SPLICE) docs/embedding.md docs-embedding $(RUN_DIR)/embedding/parity.md

clean:
	rm -rf $(ART)

# Test metrics and PNG plots of the trained checkpoint (make report CONFIG=configs/co2.toml for real data).
report: $(RUN_DIR)/model.pt
	$(CLI) report $< -o $(RUN_DIR)/report

# Peephole vs plain LSTM over seeds; one torch thread per run, EXP_JOBS runs side by side (~10 min on 2 cores).
EXP_SEEDS ?= 6
EXP_JOBS ?= 2
experiment-peepholes: $(VENV)/.installed
	$(PY) benchmarks/experiment_peepholes.py --out $(ART)/peepholes --seeds $(EXP_SEEDS) --jobs $(EXP_JOBS)

# The table and figures of docs/experiments.md: the experiment and a CO2 run report.
docs-figures: experiment-peepholes
	$(MAKE) report CONFIG=configs/co2.toml
	$(SPLICE) docs/experiments.md docs-figures $(ART)/peepholes/results.md
	mkdir -p docs/img
	cp $(ART)/peepholes/peepholes.png docs/img/
	cp $(ART)/co2/report/loss.png docs/img/co2-loss.png
	cp $(ART)/co2/report/test.png docs/img/co2-test.png

# The measured sections of docs/*.md: each target measures, then splices the result in between the page's
# <!-- generated by make TARGET --> and <!-- end generated --> comments (benchmarks/docs_section.py).
SPLICE = $(PY) -m benchmarks.docs_section
.PHONY: docs-bench docs-forms docs-runtimes docs-serving
docs-bench: bench
	$(SPLICE) docs/benchmarks.md docs-bench $(ART)/bench/bench.md

docs-forms: $(RUN_DIR)/model.pt
	$(PY) benchmarks/forms.py $< --json $(RUN_DIR)/forms.json $(FORMS_ARGS) > $(RUN_DIR)/forms.md
	$(SPLICE) docs/forms.md docs-forms $(RUN_DIR)/forms.md

docs-runtimes: $(RUN_DIR)/model.pt $(RUN_DIR)/model.onnx
	$(CLI) verify $^ > $(RUN_DIR)/verify.txt
	$(SPLICE) docs/runtimes.md docs-runtimes $(RUN_DIR)/verify.txt --fence text

docs-serving: $(RUN_DIR)/model-serve.onnx
	$(PY) benchmarks/loadtest.py $< $(BENCH_LOAD_ARGS) > $(RUN_DIR)/loadtest.txt
	$(SPLICE) docs/serving.md docs-serving $(RUN_DIR)/loadtest.txt --fence text
