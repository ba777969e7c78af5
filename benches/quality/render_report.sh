#!/usr/bin/env bash
# Renders a `vitrine bench quality` report page in headless Chromium to a PNG, to look at it.
#   bash benches/quality/render_report.sh REPORT_DIR OUT.png
# Needs Chromium (Debian: apt-get install chromium).
set -euo pipefail
report="$(cd "$1" && pwd)/report.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,3400 \
  --screenshot="$2" "file://$report" 2>/dev/null
echo "rendered $report to $2"
