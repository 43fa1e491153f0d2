#!/bin/sh
# bench_analyze.sh - compare, attribute and provenance against the raw-read
# limit (C, 2 threads, same mapped files) and the numpy peers (peer_audit.py,
# bench/peer_provenance.py),
# all in the same run, on a tinyllama-size family.
#
#   bench/bench_analyze.sh BUILD_DIR [DATA_DIR]
#
# DATA_DIR (default /work/benchdata) holds tinyllama/{base,donor1..3} from
#   gen_family.py DATA/tinyllama --preset tinyllama --donors 3 --merges none
# (made here if absent; ~9 GB) and analyze/stack2x, a 44-layer passthrough
# stack of donor1 and donor2 (made here with ref_merge.py if absent).
# Every measurement runs twice (the first warms the page cache); the second
# is reported. Ratios > 1 mean mergescope is faster.
set -eu
build=$1
data=${2:-/work/benchdata}
here=$(cd "$(dirname "$0")" && pwd)
bench=${MS_BENCH_SCRIPTS:-$here/../../shared/bench}
py=/usr/bin/python3
bin=$build/bench_analyze
fam=$data/tinyllama
[ -x "$bin" ] || { echo "bench_analyze.sh: build $bin first" >&2; exit 2; }
if [ ! -f "$fam/donor3/config.json" ]; then
    echo "generating $fam (a few minutes)" >&2
    $py "$bench/gen_family.py" "$fam" --preset tinyllama --donors 3 --merges none --quiet
fi
stack=$data/analyze/stack2x
if [ ! -f "$stack/config.json" ]; then
    mkdir -p "$data/analyze"
    cat > "$data/analyze/stack2x.yml" <<EOF
merge_method: passthrough
dtype: bfloat16
slices:
  - sources:
      - model: $fam/donor1
        layer_range: [0, 22]
  - sources:
      - model: $fam/donor2
        layer_range: [0, 22]
EOF
    echo "building $stack" >&2
    $py "$bench/ref_merge.py" "$data/analyze/stack2x.yml" "$stack" >/dev/null
fi

# field NAME LINE -> value after NAME
field() { echo "$2" | awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
measure() { "$bin" "$@" >/dev/null 2>&1; "$bin" "$@" 2>/dev/null; }
# peer: "wall_seconds cpu_seconds" (CPU of the child, user + system)
peer() {
    $py -c 'import resource, subprocess, sys, time
t = time.time()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (time.time() - t, r.ru_utime + r.ru_stime))' $py "$bench/peer_audit.py" "$@" --quiet
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

report() { # name line raw_line "peer_wall peer_cpu"
    s=$(field seconds "$2"); rss=$(field rss_mib "$2"); gbs=$(field gb_per_s "$2")
    cpu=$(field cpu_s "$2"); pw=${4% *}; pc=${4#* }
    printf '%-11s %7.2f s (cpu %6.2f s) %6.2f GB/s  RSS %6.1f MiB  vs raw-read %sx (cpu %sx)  vs peer %sx (cpu %sx)\n' \
        "$1" "$s" "$cpu" "$gbs" "$rss" "$(ratio "$(field seconds "$3")" "$s")" \
        "$(ratio "$(field cpu_s "$3")" "$cpu")" "$(ratio "$pw" "$s")" "$(ratio "$pc" "$cpu")"
}

threes="$fam/base $fam/donor1 $fam/donor2"
raw3=$(measure raw $threes)
cmp=$(measure compare $threes)
peer3=$(peer --base "$fam/base" --donor "$fam/donor1" --donor "$fam/donor2")
four="$fam/base $fam/donor3 $fam/donor1 $fam/donor2"
raw4=$(measure raw $four)
att=$(measure attribute $four)
peer4=$(peer --base "$fam/base" --donor "$fam/donor1" --donor "$fam/donor2" --merged "$fam/donor3")
provm="$stack $fam/donor1 $fam/donor2"
rawp=$(measure raw $provm)
prov=$(measure provenance $provm)
peerp=$($py -c 'import resource, subprocess, sys, time
t = time.time()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f" % (time.time() - t, r.ru_utime + r.ru_stime))' env MS_BENCH_SCRIPTS="$bench" $py "$here/peer_provenance.py" $provm)

echo "raw-read (C, 2 threads): 3 models $(field seconds "$raw3") s (cpu $(field cpu_s "$raw3") s), 4 models $(field seconds "$raw4") s (cpu $(field cpu_s "$raw4") s), stack+2 $(field seconds "$rawp") s (cpu $(field cpu_s "$rawp") s)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "peer_audit.py (wall cpu): 3 models $peer3 s, 4 models $peer4 s; stack+2 peer_provenance.py $peerp s"
report compare "$cmp" "$raw3" "$peer3"
report attribute "$att" "$raw4" "$peer4"
report provenance "$prov" "$rawp" "$peerp"
