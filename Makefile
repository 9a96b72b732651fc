# Two commands: `make test` and `make book`. Both create .venv when missing and install everything into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The torch build used here (installs from local disk on the dev machines; a CUDA build elsewhere).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# Passive OpenMP waiting: spinning threads collapse when the cores are shared (see tests/conftest.py).
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test book clean mathjax

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

install: $(VENV)/.installed

# pytest's exit code 5 (no tests collected) counts as a failure.
test: install
	$(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Two notebooks at a time, one thread each: on 2 cores this beats one 2-thread kernel, whose threads wait on each
# other at every op (measured: a 2-thread kernel stalled for minutes in 01's training cell on a shared machine).
book: install
	$(VENV)/bin/ssltutor book --workers 2

# A local MathJax 3 for the book (npm registry tarball, sha512-pinned); `ssltutor book` also does this when missing.
mathjax: install
	$(PY) -c "from ssltutor.book import ensure_mathjax; print(ensure_mathjax())"

clean:
	rm -rf _build
