# Two entry points, both from a fresh clone with Python 3.11:
#   make demo   set up .venv and run the main job on bundled data
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bitsmith-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

# The main job: train the digits MLP, then search its per-layer fixed-point
# widths (accuracy vs average bit width) on the bundled digits data.
demo: $(STAMP)
	$(BIN)/bitsmith train digits-mlp digits
	$(BIN)/bitsmith search --config configs/search_digits_quantize.toml \
		--load bitsmith_output/digits-mlp_digits/checkpoints/best.ckpt

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/quantized_forward.py
	$(BIN)/python benchmarks/search_overhead.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/latency_repeatability.py
	$(BIN)/python benchmarks/luts_metric.py

clean:
	rm -rf $(VENV) bitsmith_output
