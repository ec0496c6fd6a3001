# The README's two commands. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[gui,test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/labctl demo

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -n auto

# mypy cannot follow the package-dir mapping (nor the editable install's import hook): build/mypy/labctl
# gives it the mapped packages as symlinks; [tool.mypy] in pyproject.toml does the rest.
lint: $(STAMP)
	$(BIN)/ruff check .
	@mkdir -p build/mypy/labctl && ln -sfn ../../../labctl/__init__.py build/mypy/labctl/__init__.py
	@for pkg in instruments:instruments sim:sim_backend gui:gui protocols:protocols; do \
		ln -sfn ../../../$${pkg#*:} build/mypy/labctl/$${pkg%%:*}; done
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info labctl_demo
