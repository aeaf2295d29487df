#!/usr/bin/env bash
# PyTorch apply_model vs nomusic-htdemucs on the same 30 s clip, one after the other on this
# machine, with the same number of threads (default 2): time, real-time factor, peak RSS.
#
# Needs .venv-htdemucs (tools/htdemucs/setup.sh) and out/htdemucs from
# `make_reference.py full`. Usage, from anywhere:  bash tools/htdemucs/bench.sh [threads]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
threads="${1:-2}"
out="${HTDEMUCS_OUT:-out/htdemucs}"
py="$root/.venv-htdemucs/bin/python"
for f in "$out/htdemucs-random.th" "$out/clip.safetensors"; do
    [ -f "$f" ] || { echo "missing $f: run make_reference.py full (see README.md)" >&2; exit 1; }
done
[ -x "$py" ] || { echo "missing $py: run tools/htdemucs/setup.sh" >&2; exit 1; }
cargo build --release -q -p nomusic-htdemucs --example bench
bin="$root/target/release/examples/bench"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

# run NAME CMD...: prints the program's line, keeps "seconds peak_MiB" in $log/NAME.
run() {
    local name="$1"
    shift
    echo "== $name ($(uptime | sed 's/.*load/load/'))"
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v -o "$log/$name.time" "$@" | tee "$log/$name.out"
        rss="$(awk -F': *' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log/$name.time")"
    else
        "$@" | tee "$log/$name.out"
        rss="$(sed -n 's/.*peak RSS \([0-9]*\) MiB.*/\1/p' "$log/$name.out")"
    fi
    secs="$(sed -n 's/.*separated in \([0-9.]*\) s.*/\1/p' "$log/$name.out")"
    audio="$(sed -n 's/.* \([0-9.]*\) s separated in.*/\1/p' "$log/$name.out")"
    echo "$secs $rss $audio" >"$log/$name"
}

run pytorch "$py" tools/htdemucs/make_reference.py bench --out "$out" --threads "$threads"
run nomusic env RAYON_NUM_THREADS="$threads" "$bin" "$out/htdemucs-random.th" "$out/clip.safetensors"

read -r t_secs t_rss audio <"$log/pytorch"
read -r n_secs n_rss _ <"$log/nomusic"
echo
echo "$threads threads, ${audio} s clip; load after: $(uptime | sed 's/.*average: //')"
printf '%-22s %9s %6s %14s\n' "" "time (s)" "RTF" "peak RSS (MiB)"
for row in "PyTorch $t_secs $t_rss" "nomusic-htdemucs $n_secs $n_rss"; do
    set -- $row
    printf '%-22s %9.2f %6.3f %14s\n' "$1" "$2" "$(awk -v t="$2" -v a="$audio" 'BEGIN { print t / a }')" "$3"
done
printf 'nomusic-htdemucs is %.2fx as fast as PyTorch\n' "$(awk -v a="$t_secs" -v b="$n_secs" 'BEGIN { print a / b }')"
