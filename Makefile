# nnh — two commands for everyone: `make book` and `make test`.
# Everything runs in .venv/ at the repository root, created on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

# The same quiet, reproducible environment for the book build, nbval, nbgrader
# and the tests (nnh sets these too, but kernels may import Keras first).
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export JUPYTER_PLATFORM_DIRS := 1

JB_BUILD := $(BIN)/jupyter-book build . -n -W --keep-going
ASSIGNMENTS := $(notdir $(wildcard solutions/*))
NOTEBOOKS := $(wildcard book/*.ipynb) $(foreach a,$(ASSIGNMENTS),solutions/$(a)/$(a).ipynb)

.PHONY: install book test exercises notebooks bench constraints clean vendor system-deps

# Browser-side assets, vendored from npm (no CDN at run time): MathJax is served
# from the built site (book/_static/vendor/, git-ignored; _config.yml mathjax_path),
# axe-core is injected by tests/test_browser.py for the accessibility check.
MATHJAX_VERSION := 3.2.2
AXE_VERSION     := 4.11.0
VENDOR          := _vendor/.installed-mathjax-$(MATHJAX_VERSION)-axe-$(AXE_VERSION)
CHROMIUM        ?= /usr/bin/chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@# jsonschema (through jupyter-events' jsonschema[format-nongpl]) imports rfc3987-syntax
	@# eagerly when it is installed, and that builds three Lark parsers: 2.5 s in every process
	@# that imports nbformat (nbgrader, nbconvert, nbval, jupyter-book; python-jsonschema/
	@# jsonschema#1428).  Only jsonschema's "iri" format check uses it, and nothing here does.
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

## make vendor: fetch MathJax and axe-core from npm into _vendor/ and the book's static files
$(VENDOR):
	@command -v npm >/dev/null || $(MAKE) --no-print-directory system-deps
	rm -rf _vendor book/_static/vendor
	mkdir -p _vendor book/_static/vendor/mathjax
	npm install --silent --no-audit --no-fund --prefix _vendor mathjax@$(MATHJAX_VERSION) axe-core@$(AXE_VERSION)
	cp _vendor/node_modules/mathjax/es5/tex-chtml.js _vendor/node_modules/mathjax/LICENSE book/_static/vendor/mathjax/
	cd _vendor/node_modules/mathjax/es5 && cp -r a11y adaptors input output sre ui $(CURDIR)/book/_static/vendor/mathjax/
	touch $@

vendor: $(VENDOR)

## make system-deps: Debian's chromium (headless browser tests), npm and bubblewrap (nnh grade's
## sandbox); installs them as root (CI)
system-deps:
	@missing=""; [ -x $(CHROMIUM) ] || missing="chromium"; command -v npm >/dev/null || missing="$$missing npm"; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "apt-get install -y $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
	  echo "error: the tests need chromium ($(CHROMIUM)), npm and bubblewrap; missing: $$missing. Install them (Debian: sudo apt-get install -y $$missing) or set CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; \
	fi

## make book: install, then build the executed HTML book into _build/html/
book: $(STAMP) $(VENDOR)
	$(JB_BUILD)
	@echo "Book: file://$(CURDIR)/_build/html/index.html"

## make test: install, then every test (library, notebooks, grading, book build)
test: $(STAMP) $(VENDOR) system-deps
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

## make exercises: regenerate exercises/ (nbgrader release) from solutions/ (source)
exercises: $(STAMP)
	@for a in $(ASSIGNMENTS); do $(BIN)/nbgrader generate_assignment $$a --force || exit 1; done

## make notebooks: (re)insert the Colab install cell (nnh/colab.py), re-execute chapters and
## reference solutions, storing outputs for nbval; then `make exercises` to release them
notebooks: $(STAMP)
	$(BIN)/python -m nnh.colab $(NOTEBOOKS)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 $(NOTEBOOKS)
	$(BIN)/python -c "import sys, nbformat; [nbformat.write(nb, p) for p in sys.argv[1:] \
	  for nb in [nbformat.read(p, 4)] if [c.metadata.pop('execution', None) for c in nb.cells] or True]" $(NOTEBOOKS)

## make bench: time the cold and cached book builds, each chapter, grading, and `make test`
## on a fresh clone (bench/results.json; about 30 minutes on 2 cores)
bench: $(STAMP) $(VENDOR) system-deps
	$(BIN)/python bench/book.py
	$(BIN)/python bench/grading.py
	CHROMIUM=$(CHROMIUM) $(BIN)/python bench/suite.py

## make constraints: re-pin every dependency after a change to pyproject.toml
constraints: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf _build gradebook.db submitted autograded feedback .pytest_cache .hypothesis
