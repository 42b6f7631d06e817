#!/bin/sh
# Runs inside each VM (from /payload): for every backend this kernel allows,
# record `nettop offsets --json` and run both integration suites with that
# backend forced. One "RESULT <name> pass|fail" line per check in
# /out/results; evidence (JSON, logs) in /out.
cd /payload || exit 1
export NETTOP_BIN=/payload/nettop
# shellcheck disable=SC1091 # written by tests/vm/run for variants and narrowed runs
[ -f env.sh ] && . ./env.sh

# There is no modprobe: the modules tests/vm/run chose (sock_diag for the
# backfill, kTLS for the data-path test), dependencies first.
while read -r m; do
    insmod modules/"$m".ko 2>/dev/null
done <modules/order
# Every kernel here has netem (built in or loaded above): the TCP health
# tests must run, not say it is unavailable. tc comes with the payload.
export PATH=/payload/bin:$PATH NETTOP_EXPECT_NETEM=1

# A check that hangs is killed after NETTOP_VM_CHECK_TIMEOUT seconds and
# fails on its own, so the checks after it still run and the VM's results
# (with the hung check's log so far) still reach the host.
check_timeout=${NETTOP_VM_CHECK_TIMEOUT:-420}
check() { # NAME COMMAND…: run, keep the log, record the verdict
    name=$1
    shift
    t0=$(cut -d. -f1 /proc/uptime)
    timeout -s KILL "$check_timeout" "$@" >/out/"$name".log 2>&1
    rc=$?
    t=$(($(cut -d. -f1 /proc/uptime) - t0))
    if [ "$rc" = 0 ]; then verdict=pass; else verdict=fail; fi
    [ "$rc" = 137 ] && [ "$t" -ge "$check_timeout" ] &&
        echo "guest.sh: $name killed after $check_timeout s" >>/out/"$name".log
    echo "RESULT $name $verdict" >>/out/results
    echo "$name: $verdict in $t s"
    tail -3 /out/"$name".log
}

tests="guessed_offsets auto_mode btf_mode trace_json list_json list_interval no_program filters bad_input"
if [ -n "${NETTOP_VM_HIDE_BTF:-}" ]; then
    # As on a kernel built without BTF: nettop sees an empty file; the test
    # oracle keeps a copy.
    cp /sys/kernel/btf/vmlinux /tmp/vmlinux.btf
    : >/tmp/empty
    mount -o bind /tmp/empty /sys/kernel/btf/vmlinux
    export NETTOP_ORACLE_BTF=/tmp/vmlinux.btf
    tests="guessed_offsets trace_json list_json list_interval no_program filters bad_input"
    check fentry-unavailable sh -c \
        '! ./nettop --backend fentry offsets 2>/out/fentry.err && grep -q "BTF" /out/fentry.err'
    check auto-unverified sh -c \
        './nettop --backend kprobe offsets --json >/out/offsets-auto.json && grep -q "could not verify" /out/offsets-auto.json'
    default_backends=kprobe
elif [ -d /sys/kernel/tracing/events/sock/sock_send_length ]; then
    default_backends="kprobe fentry tracepoint"
else
    default_backends="kprobe fentry"
fi
backends=${NETTOP_VM_BACKENDS:-$default_backends}
# NETTOP_VM_TRACKER_WHOLE_ON=BACKEND (PREEMPT_RT boots): the whole tracker
# suite on that backend (the first one where this kernel lacks it), the
# exactness tests on the others: exact TCP and UDP bytes, IPv6, the
# 5000-connection burst, tables read without pause, two namespaces and the
# tcp_info oracle over 100 connections.
whole_on=${NETTOP_VM_TRACKER_WHOLE_ON:-}
case " $backends " in *" $whole_on "*) ;; *) whole_on=${backends%% *} ;; esac
exactness="tcp_v udp_connected a_burst_of_5000 counts_stay_exact same_tuple_in_two counters_equal_the_kernels"
for b in $backends; do
    if [ -n "${NETTOP_VM_BENCH:-}" ]; then
        # shellcheck disable=SC2086 # a list of parts
        check bench-"$b" env NETTOP_BACKEND="$b" ./cost $NETTOP_VM_BENCH
        continue
    fi
    check offsets-"$b" sh -c "./nettop --backend $b offsets --json --offsets guess >/out/offsets-$b.json"
    # The privilege checks once per kernel (they do not depend on the
    # backend; each backend's exit through Landlock is no_program's).
    only_once=
    [ -z "${privileges_checked:-}" ] && only_once="capabilities landlock" && privileges_checked=1
    # shellcheck disable=SC2086 # test-name filters
    check integration-"$b" env NETTOP_BACKEND="$b" NETTOP_EXPECT_BACKEND="$b" \
        ./integration --test-threads=1 ${NETTOP_VM_TESTS:-$tests $only_once}
    # NETTOP_VM_TRACKER: 0 skips the tracker tests, 1 runs them all, any
    # other value is a test-name filter.
    tracker_filter=${NETTOP_VM_TRACKER:-1}
    [ -n "${NETTOP_VM_TRACKER_WHOLE_ON:-}" ] && [ "$b" != "$whole_on" ] && tracker_filter=$exactness
    [ "$tracker_filter" = 1 ] && tracker_filter=
    # With NETTOP_DEBUG_EVENTS the raw events of passing tests are kept too.
    nocapture=
    [ -n "${NETTOP_DEBUG_EVENTS:-}" ] && nocapture=--nocapture
    # shellcheck disable=SC2086 # a test-name filter
    [ "$tracker_filter" = 0 ] || check tracker-"$b" env NETTOP_BACKEND="$b" ./tracker --test-threads=1 $nocapture $tracker_filter
    # Its log says which cases the kernel allowed (kTLS, io_uring) either way.
    [ "$tracker_filter" = 0 ] || check data_paths-"$b" env NETTOP_BACKEND="$b" ./data_paths --nocapture
done
grep -q "fail$" /out/results && exit 1
exit 0
