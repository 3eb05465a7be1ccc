#!/usr/bin/env bash
# Headless Chromium for the MLflow UI test (tests/platform/test_remote_mlflow.py). Called by `make test`.
# A no-op when a Chromium is on PATH; installs Debian's `chromium` when run as root (CI); otherwise
# says how, and the UI test skips.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian package) for the MLflow UI test..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
    echo "warning: chromium not found; the MLflow UI test will be skipped (install: apt-get install chromium)" >&2
fi
