# Two entry points: `make run` (the main job) and `make test`. Both build .venv on first use.
VENV ?= .venv
# The verified reference data beside the checkout, unless the caller points elsewhere.
export ROBERTA_INFER_DATA ?= $(if $(wildcard ../shared/data/SST-2/dev.tsv),$(abspath ../shared/data),$(CURDIR)/data)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install run test browser

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0   # the CPU build; a bare `torch` would pull a multi-GB CUDA one
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# `make run`'s tables cover a quick grid of batch sizes × sequence lengths, so that it stays within 3 minutes on 2 cores;
# `make run GRID=` runs the reference's whole one (run's defaults: batch 1,4,8,16,32,64 × seq 16,32,64,70,128).
GRID ?= --batch-sizes 1,8,32 --seq-lens 16,32,70,128

run: $(STAMP)
	$(VENV)/bin/roberta-infer run $(GRID) $(ARGS)

test: $(STAMP) browser
	$(VENV)/bin/pytest -q $(ARGS)

# Debian's chromium renders report.html in a test; where it cannot be installed (no root, no apt), that test is
# skipped, except under CI (CI=true), where it fails.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the report's browser test is skipped"
