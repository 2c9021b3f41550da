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

.PHONY: install book test exercises notebooks bench constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	touch $(STAMP)

install: $(STAMP)

## make book: install, then build the executed HTML book into _build/html/
book: $(STAMP)
	$(JB_BUILD)
	@echo "Book: file://$(CURDIR)/_build/html/index.html"

## make test: install, then every test (library, notebooks, grading, book build)
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup

## make exercises: regenerate exercises/ (nbgrader release) from solutions/ (source)
exercises: $(STAMP)
	@for a in $(ASSIGNMENTS); do $(BIN)/nbgrader generate_assignment $$a --force || exit 1; done

## make notebooks: re-execute chapters and reference solutions, storing outputs for nbval
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.record_timing=False --ExecutePreprocessor.timeout=600 $(NOTEBOOKS)
	$(BIN)/python -c "import sys, nbformat; [nbformat.write(nb, p) for p in sys.argv[1:] \
	  for nb in [nbformat.read(p, 4)] if [c.metadata.pop('execution', None) for c in nb.cells] or True]" $(NOTEBOOKS)

## make bench: time the cold and cached book builds and each chapter's execution
bench: $(STAMP)
	$(BIN)/python bench/book.py

## make constraints: re-pin every dependency after a change to pyproject.toml
constraints: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf _build gradebook.db submitted autograded feedback .pytest_cache .hypothesis
