#!/usr/bin/env bash
# Makes sure a Chromium is here for the dashboard's browser tests (tests/test_dashboard.py):
# installs Debian's chromium package when none is found and this runs as root; Playwright
# drives it (Playwright's own browser download is not used).
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    if command -v "$name" > /dev/null; then
        exit 0
    fi
done
if [ -n "${GATEWAY_TEST_CHROMIUM:-}" ] && [ -x "$GATEWAY_TEST_CHROMIUM" ]; then
    exit 0
fi
"$(dirname "$0")/debian-install.sh" chromium Chromium
