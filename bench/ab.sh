#!/bin/sh
# bench/ab.sh - bench/check of two builds, run in turns, so that each
# figure has its reference from the same minutes (this kind of VM drifts
# between a fast and a slow mode for minutes at a time).
#
#   bench/ab.sh OLD_BUILD NEW_BUILD [ROUNDS] [bench/check options...]
#
# A build is a configured build folder (`make bench` is run in it).
# Prints the one-thread lines of each run, labelled, and the load.
set -e
if [ $# -lt 2 ]; then
    echo "usage: bench/ab.sh OLD_BUILD NEW_BUILD [ROUNDS] [bench/check options]" >&2
    exit 2
fi
old=$(cd "$1" && pwd)
new=$(cd "$2" && pwd)
rounds=${3:-3}
[ $# -ge 3 ] && shift 3 || shift 2
for b in "$old" "$new"; do
    make -C "$b" bench >/dev/null
done
i=1
while [ "$i" -le "$rounds" ]; do
    for b in "$old" "$new"; do
        label=new
        [ "$b" = "$old" ] && label=old
        echo "### round $i, $label ($b), load $(cut -d' ' -f1-3 /proc/loadavg)"
        KEYGATE_PLUGIN_PATH="$b/plugins:$b/bench" "$b/bench/check" "$@" 2>&1 |
            grep -E '1 thread|vs 1000|floor|bytes per key'
    done
    i=$((i + 1))
done
