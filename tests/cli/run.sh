#!/bin/sh
# Golden CLI tests. Each tests/cli/cases/NAME.cmd holds one mergescope
# argument line ($GEN: generated fixtures, $SHARED: ../shared/fixtures,
# $TMP: a scratch directory); NAME.out holds the expected stdout followed by
# a last line "exit: N". A case whose .cmd mentions $SHARED is skipped when
# that folder is absent. Run with UPDATE=1 to rewrite the .out files.
set -u
bin=$1 GEN=$2 SHARED=$3
here=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export GEN SHARED TMP
pass=0 fail=0 skip=0
for cmd in "$here"/cases/*.cmd; do
    [ -e "$cmd" ] || continue
    name=$(basename "$cmd" .cmd)
    if grep -q '\$SHARED' "$cmd" && [ ! -d "$SHARED" ]; then
        echo "skip $name: $SHARED is absent"; skip=$((skip + 1)); continue
    fi
    args=$(cat "$cmd")
    actual=$(cd "$TMP" && eval "\"$bin\" $args" 2>"$TMP/stderr"; echo "exit: $?")
    if [ "${UPDATE:-0}" = 1 ]; then
        printf '%s\n' "$actual" > "$here/cases/$name.out"
    fi
    if [ "$actual" = "$(cat "$here/cases/$name.out" 2>/dev/null)" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: mergescope $args"
        printf '%s\n' "$actual" | diff -u "$here/cases/$name.out" - | head -40
        echo "stderr:"; head -5 "$TMP/stderr"
    fi
done
echo "cli: $pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
