#!/usr/bin/env bash
# Install what Watchfloor needs on a fresh Debian/Ubuntu machine, then resolve Kafka's jars:
#   - system packages: redis-server, a Java 17+ runtime and Maven (for the Kafka jars),
#     Chromium and its WebDriver (for the dashboard's browser tests), Node.js (its script's unit tests)
#   - a virtualenv in .venv with the project and its test tools
#   - the Kafka broker's jars from Maven Central into ~/.cache/watchfloor (once)
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
# tests/gateway/test_dashboard.py drives /usr/bin/chromium through /usr/bin/chromedriver
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# tests/gateway/test_js.py runs the dashboard's pure modules under node --test (no npm package needed)
command -v node >/dev/null || missing+=(nodejs)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "[setup] missing: ${missing[*]}. Install them, e.g.: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
echo "[setup] installing Python packages into .venv" >&2
# -q: pip prints only warnings and errors. The one warning an editable install of this flat layout always
# gets is setuptools' notice "Editable installation ... folders with the same name as your package"
# (information, not a fault), so that message alone is filtered; any other warning still shows.
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[test]'
echo "[setup] resolving the Kafka broker's jars into ${WF_CACHE:-$HOME/.cache/watchfloor} (once)" >&2
.venv/bin/python -m infra.stack jars >/dev/null
echo "[setup] ready" >&2
