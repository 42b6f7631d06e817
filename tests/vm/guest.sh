#!/bin/sh
# Runs inside each VM (from /payload): for every backend this kernel should
# support, record `nettop offsets --json` and run the integration tests with
# that backend forced. One "RESULT <name> pass|fail" line per check in
# /out/results; evidence in /out.
cd /payload || exit 1
export NETTOP_BIN=/payload/nettop
# shellcheck disable=SC1091 # written by tests/vm/run when narrowing a run
[ -f env.sh ] && . ./env.sh
for m in inet_diag tcp_diag udp_diag; do
    [ -f modules/$m.ko ] && insmod modules/$m.ko
done
backends=${NETTOP_VM_BACKENDS:-kprobe fentry}
tests=${NETTOP_VM_TESTS:-guessed_offsets auto_mode trace_json list_json no_program}
for b in $backends; do
    if ./nettop --backend "$b" offsets --json --offsets guess >/out/offsets-"$b".json 2>/out/offsets-"$b".err; then
        echo "RESULT offsets-$b pass" >>/out/results
    else
        echo "RESULT offsets-$b fail" >>/out/results
    fi
    # shellcheck disable=SC2086 # $tests is a list of test-name filters
    if NETTOP_BACKEND=$b NETTOP_EXPECT_BACKEND=$b ./integration --test-threads=1 $tests \
        >/out/tests-"$b".log 2>&1; then
        echo "RESULT tests-$b pass" >>/out/results
    else
        echo "RESULT tests-$b fail" >>/out/results
    fi
    tail -3 /out/tests-"$b".log
    if NETTOP_BACKEND=$b ./tracker --test-threads=1 >/out/tracker-"$b".log 2>&1; then
        echo "RESULT tracker-$b pass" >>/out/results
    else
        echo "RESULT tracker-$b fail" >>/out/results
    fi
    tail -3 /out/tracker-"$b".log
done
cat /out/results
grep -q "fail$" /out/results && exit 1
exit 0
