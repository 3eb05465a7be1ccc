# The two set-up commands of the README. Each creates .venv and installs what it needs itself.
#   make demo   the whole study on the embedded default (phantom data, local Ray, local MLflow)
#   make test   the test suite (slow end-to-end tests included)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

# torch/torchvision are pinned in pyproject.toml: other releases are multi-GB downloads.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

.PHONY: install demo test test-fast wheel
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/radisim demo $(ARGS)

test: $(STAMP)
	.ci/ensure-chromium.sh
	$(PY) -m pytest -q -p no:cacheprovider $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

# The wheel that cluster.yaml installs on every node (or that a job ships in runtime_env py_modules).
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps -q -w dist .
	@ls dist/radisim-*.whl
