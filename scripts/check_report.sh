#!/usr/bin/env bash
# Renders a Distill HTML report in headless Chromium (Debian's `chromium` package) to a PNG
# and checks that its SVG charts drew: the page is screenshotted, and the DOM Chromium built
# must hold the charts' polylines, bars and cells.
#
#   scripts/check_report.sh runs/demo/report.html [out.png]
set -euo pipefail
report=$(realpath "${1:?usage: check_report.sh REPORT.html [OUT.png]}")
png=${2:-${report%.html}.png}
command -v chromium >/dev/null || { echo "chromium is not installed: apt-get install chromium" >&2; exit 2; }
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars)
chromium "${flags[@]}" --window-size=1300,2400 --screenshot="$png" "file://$report" >/dev/null 2>&1
dom=$(chromium "${flags[@]}" --dump-dom "file://$report" 2>/dev/null)
lines=$(grep -o '<polyline class="series"' <<<"$dom" | wc -l)
bars=$(grep -o 'class="bar"' <<<"$dom" | wc -l)
cells=$(grep -o 'class="cell"' <<<"$dom" | wc -l)
ticks=$(grep -o 'class="tick"' <<<"$dom" | wc -l)
points=$(grep -o 'class="scatter"' <<<"$dom" | wc -l)
compared=$(grep -o '<table class="comparison">' <<<"$dom" | wc -l)
[ -s "$png" ] || { echo "no screenshot was written" >&2; exit 1; }
[ "$lines" -ge 2 ] && [ "$bars" -ge 1 ] && [ "$cells" -ge 4 ] && [ "$ticks" -ge 5 ] || {
  echo "charts missing in the rendered page: $lines lines, $bars bars, $cells cells, $ticks axis ticks" >&2; exit 1; }
echo "rendered $png: $lines line series, $bars bars, $cells confusion cells, $ticks x-axis ticks, $points scatter points, $compared comparison tables"
