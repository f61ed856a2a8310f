#!/usr/bin/env bash
# Screenshot a report page in headless Chromium: scripts/screenshot_report.sh PAGE.html OUT.png [WIDTH,HEIGHT]
# (default 1280,1000: the first screen, the summary). Used for the screenshot committed beside a report and by
# the report's browser test.
set -eu
page=$1 out=$2 size=${3:-1280,1000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --allow-file-access-from-files --virtual-time-budget=5000 \
  --hide-scrollbars --user-data-dir="$profile" --window-size="$size" --screenshot="$(realpath "$out")" \
  "file://$(realpath "$page")" >/dev/null 2>&1
test -s "$out"
