#!/bin/sh
# Runs inside a kernel-matrix guest (scripts/kernel-matrix.sh): probes what this kernel offers
# the tests (qdiscs, classifiers, devices) and lists what it lacks, then runs each test given
# as "BINARY NAME" pairs, one at a time, each line prefixed with the kernel. On a kernel older
# than hotspotd's minimum only the `kernel` test runs (the refusal); the others need a daemon.
# Exits non-zero if a test failed.
release=$(uname -r)
# major * 1000 + minor: 5012 is 5.12, hotspotd's minimum.
version=$(echo "$release" | awk -F. '{ print $1 * 1000 + $2 }')

# What the tests need from the kernel, probed by loading it (never assumed from the version).
missing=
for module in sch_htb sch_ingress cls_bpf sch_fq_codel ifb veth bridge; do
  if ! grep -qw "^$module" /proc/modules && ! modprobe -q "$module" 2>/dev/null \
    && ! grep -q "/$module.ko" "/lib/modules/$release/modules.builtin" 2>/dev/null; then
    missing="$missing $module"
  fi
done
ip link add hotspotd-probe type dummy 2>/dev/null
for qdisc in clsact htb; do
  if tc qdisc add dev hotspotd-probe root handle 1: "$qdisc" 2>/dev/null \
    || tc qdisc add dev hotspotd-probe "$qdisc" 2>/dev/null; then
    tc qdisc del dev hotspotd-probe root 2>/dev/null || tc qdisc del dev hotspotd-probe "$qdisc" 2>/dev/null
  else
    missing="$missing qdisc:$qdisc"
  fi
done
ip link del hotspotd-probe 2>/dev/null
echo "kernel $release: lacks:${missing:- nothing the tests use}"

status=0
passed=0
failures=
while [ $# -ge 2 ]; do
  binary=$1 name=$2
  shift 2
  case ${binary##*/} in
  kernel-*) ;;
  *)
    if [ "$version" -lt 5012 ]; then
      echo "kernel $release: $name skipped (older than hotspotd's minimum, 5.12)"
      continue
    fi
    ;;
  esac
  start=$(date +%s)
  # From the test package's folder, as cargo runs them.
  if (cd tests && HOTSPOTD_TEST_SLOWDOWN=${HOTSPOTD_TEST_SLOWDOWN:-4} "$binary" --exact "$name" --test-threads=1 --nocapture >/tmp/test.log 2>&1); then
    passed=$((passed + 1))
    echo "kernel $release: $name ok ($(($(date +%s) - start)) s)"
    grep "^kernel $release" /tmp/test.log
  else
    status=1
    failures="$failures $name"
    echo "kernel $release: $name FAILED ($(($(date +%s) - start)) s)"
    tail -40 /tmp/test.log | sed "s/^/  /"
  fi
done
echo "kernel $release: $passed passed, failed:${failures:- none}"
exit $status
