#!/usr/bin/env bash
# Install Chromium from the system's packages when it is missing: the report's browser test renders the
# HTML report in headless Chromium. Without root or apt the test is skipped (outside CI) with a warning.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing chromium (for the report's browser test)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "warning: could not install chromium; the browser test will not run" >&2
else
  echo "warning: chromium is missing and cannot be installed here (needs root and apt-get); the browser test will not run" >&2
fi
exit 0
