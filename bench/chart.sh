#!/usr/bin/env bash
# bench/chart.sh RESULTS SVG: a small SVG bar chart of the last `make bench` run in RESULTS (bench/run.sh's
# table): each endpoint's rate as a ratio to the do-nothing handler, one bar per web server. No dependencies
# beyond awk (no gnuplot on the build machine).
set -euo pipefail
in=${1:-bench/results.txt}
out=${2:-bench/results.svg}
awk '
    /^# make bench/ { n = 0; title = substr($0, 3); delete rows; next }
    (NF == 7 || NF == 8) && $1 != "server" && $3 ~ /^[0-9]+$/ { rows[++n] = $0 }
    END {
        if (n == 0) exit 1
        bar = 18; gap = 6; left = 190; width = 420; top = 40
        h = top + n * (bar + gap) + 40
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", left + width + 120, h
        printf "<text x=\"10\" y=\"18\" font-size=\"13\">Rate as a share of the do-nothing FastCGI handler (1.0), same web server</text>\n"
        printf "<text x=\"10\" y=\"32\" font-size=\"10\" fill=\"#555\">%s</text>\n", substr(title, 1, 140)
        for (i = 1; i <= n; i++) {
            split(rows[i], f, /[ \t]+/)
            y = top + (i - 1) * (bar + gap)
            w = f[4] * width; if (w > width * 1.2) w = width * 1.2
            color = f[1] == "nginx" ? "#4a8f3c" : "#3c6e9f"
            printf "<text x=\"10\" y=\"%d\">%s %s</text>\n", y + 13, f[1], f[2]
            printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", left, y, w, bar, color
            printf "<text x=\"%.1f\" y=\"%d\">%s (%s req/s, p99 %s ms)</text>\n", left + w + 4, y + 13, f[4], f[3], f[6]
        }
        printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"3,3\"/>\n", left + width, top - 4, left + width, h - 30
        printf "</svg>\n"
    }' "$in" >"$out.tmp" && mv "$out.tmp" "$out"
