#!/bin/sh
# The rx7900xtx fixture as real util-linux `dmesg` prints it in the forms whose stamps are not
# printk's: `--time-format reltime` (what `dmesg -H` shows), `delta`, `notime`, and `-x` with
# `-T` (facility/level decoration). `dmesg -F` reads the fixture as a syslog-format buffer
# (`<3>[45766.649480] msg`); wall-clock forms use this machine's boot time, so the reltime and
# -x -T samples of one run are on the same clock (the golden test compares them).
# Run from the repository root: sh testdata/logs/make-dmesg-samples.sh   (util-linux 2.38.1)
set -e
here=$(dirname "$0")
klog=$(mktemp)
sed 's/^/<3>/' "$here/../dmesg/rx7900xtx-mes-mode1-reset.log" > "$klog"
export TZ=Europe/Warsaw LC_ALL=C
dmesg -F "$klog" --time-format reltime > "$here/dmesg/rx7900xtx.dmesg-reltime"
dmesg -F "$klog" -x -T > "$here/dmesg/rx7900xtx.dmesg-x-T"
dmesg -F "$klog" --time-format delta > "$here/dmesg/rx7900xtx.dmesg-delta"
dmesg -F "$klog" --time-format notime > "$here/dmesg/rx7900xtx.dmesg-notime"
dmesg -F "$klog" -x > "$here/dmesg/rx7900xtx.dmesg-x"
rm -f "$klog"
