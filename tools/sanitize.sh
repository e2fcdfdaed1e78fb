#!/usr/bin/env bash
# Build convt_blas with AddressSanitizer + UndefinedBehaviorSanitizer in a separate
# tree and run the test suite under it.
#
#   tools/sanitize.sh                       # whole suite
#   tools/sanitize.sh -k fuzz -x            # extra arguments go to pytest
#   tools/sanitize.sh tests/test_fuzz.py    # only these files (as .ci/run does)
#
# Environment: PYTHON (an interpreter with the build and test requirements; default
# the checkout's .venv/bin/python if there is one, else python3), CC (default cc),
# CONVT_BLAS_SANITIZE_DIR (default build/sanitize), CONVT_BLAS_FUZZ_EXAMPLES (examples
# per fuzz test), ASAN_OPTIONS / UBSAN_OPTIONS (appended to the defaults below, so
# they win).
# The tree that the normal build and the tests use is left as it is.
# Exit status: nonzero on a failed test or on any sanitizer report, in whichever
# process (pytest, a subprocess or forked worker, a build that imports convt_blas).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ ! -x "$ROOT/.venv/bin/python" ] || PYTHON=$ROOT/.venv/bin/python
fi
case $PYTHON in  # a relative path, made absolute: the tests run in another directory
    /*) ;;
    */*) PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON") ;;
esac
TREE=${CONVT_BLAS_SANITIZE_DIR:-$ROOT/build/sanitize}

# A copy of the sources (what git tracks, or would), so the sanitized extension never
# replaces the normal one.
rm -rf "$TREE"
mkdir -p "$TREE"
if git -C "$ROOT" rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar cf -) \
        | (cd "$TREE" && tar xf -)
else
    (cd "$ROOT" && tar cf - --exclude=./build --exclude=./.venv --exclude='*.so' .) \
        | (cd "$TREE" && tar xf -)
fi
cd "$TREE"
CONVT_BLAS_SANITIZE=1 "$PYTHON" setup.py -q build_ext --inplace

EXTENSION=$(ls convt_blas/kernels*.so)
# grep reads all of nm's output: with -q it would stop at the first match, and
# pipefail would then report nm's SIGPIPE as a failure.
if ! nm -D "$EXTENSION" | grep __asan_report > /dev/null; then
    echo "sanitize.sh: $EXTENSION is not instrumented" >&2
    exit 1
fi
# Python itself is not instrumented: the ASan runtime must be loaded before anything
# else, so preload the one the extension was linked against.
LIBASAN=$(ldd "$EXTENSION" | awk '/libasan/ {print $3; exit}')
if [ -z "$LIBASAN" ]; then
    LIBASAN=$("${CC:-cc}" -print-file-name=libasan.so)
fi
PRELOAD=$LIBASAN
# ASan intercepts C++ throws only if libstdc++ is loaded when it starts; Python
# itself does not link it, so C++ libraries (torch) would abort on their first throw.
LIBSTDCXX=$(readlink -f "$("${CC:-cc}" -print-file-name=libstdc++.so)" || true)
if [ -f "$LIBSTDCXX" ]; then
    PRELOAD=$PRELOAD:$LIBSTDCXX
fi

# detect_leaks=0: the interpreter keeps objects alive until exit by design
#   (leaks are checked by tests/test_reliability.py instead).
# allocator_may_return_null=1: an impossible allocation gives NULL, so MemoryError
#   is tested as it is without the sanitizer.
# halt_on_error=1: UBSan, like ASan, stops the process at its first report, so a
#   report in a subprocess whose output a test captures still fails that test;
#   UBSAN_OPTIONS=halt_on_error=0 lists every report of a run instead.
# log_path: ASan writes its reports to a file per process in $REPORTS (asan.pid),
#   also for processes whose standard error a test captures and drops. UBSan
#   (GCC's libubsan) ignores log_path and writes to standard error, kept in $LOG.
# A report found in $REPORTS or $LOG fails the run.
# PYTHONMALLOC=malloc: every Python object comes from ASan's malloc too.
REPORTS=$TREE/reports
LOG=$TREE/sanitizer.log
mkdir -p "$REPORTS"
export LD_PRELOAD="$PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}"
ASAN_DEFAULTS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1
export ASAN_OPTIONS="$ASAN_DEFAULTS:log_path=$REPORTS/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc
ERRORS='ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:'

# The sanitized copy must be the one imported (the current directory comes first).
"$PYTHON" -c "import convt_blas.kernels as k, os, sys; \
assert os.path.dirname(os.path.dirname(k.__file__)) == os.getcwd(), k.__file__; \
print('sanitized build:', k.__file__)"

# Canaries, through the raw kernel entry point (no argument checks) and with the
# options of the run below: a write one element past an array (ASan) and a store
# to a misaligned float (UBSan) must each stop the process and be found where the
# run's reports are looked for, or a clean run below would mean nothing.
canary() {  # canary NAME EXPECTED OUT_EXPRESSION
    local dir=$TREE/canary-$1 output
    rm -rf "$dir"
    mkdir -p "$dir"
    if output=$(ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$dir/asan" "$PYTHON" - "$3" 2>&1 <<'EOF'
import sys
import numpy as np
from convt_blas import kernels
params = (1, 1, 64, 1, 3, 1, 0, 0, 1, 1)  # output length 66
plan = kernels.plan_call(params, False)
workspace = np.empty(plan.worker_elements, np.float32)
out = eval(sys.argv[1])
kernels.run_plan(plan, np.ones((1, 1, 64), np.float32), (64, 64, 1),
                 np.ones((1, 1, 3), np.float32), None, out, workspace, 1)
EOF
    ); then
        echo "sanitize.sh: the $1 canary ran to its end" >&2
        exit 1
    fi
    if ! grep -q -E "$2" <<< "$output" && ! grep -q -s -E "$2" "$dir"/*; then
        echo "$output" >&2
        echo "sanitize.sh: the $1 canary was not reported" >&2
        exit 1
    fi
    echo "sanitize.sh: $1 canary caught"
}
canary out-of-bounds "ERROR: AddressSanitizer: heap-buffer-overflow" \
    "np.empty((1, 1, 65), np.float32)"
canary misaligned "runtime error: store to misaligned address" \
    "np.zeros(66 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(1, 1, 66)"

# Child Python processes (Dask workers, builds that import convt_blas) keep the preload;
# nvcc crashes under it, so it is run through a shim that drops it.
SHIMS=$TREE/without-asan
mkdir -p "$SHIMS"
for tool in nvcc; do
    if real=$(command -v "$tool"); then
        printf '#!/bin/sh\nunset LD_PRELOAD\nexec "%s" "$@"\n' "$real" > "$SHIMS/$tool"
        chmod +x "$SHIMS/$tool"
    fi
done
# --capture=sys: what C code writes to file descriptor 2 (UBSan reports, a crash's
# last words) is not captured by pytest, so it reaches the terminal and $LOG.
# No path given: pytest's testpaths (tests).
status=0
PATH=$SHIMS:$PATH "$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys "$@" \
    2> >(tee "$LOG" >&2) || status=$?
wait  # for tee
if grep -q -s -E "$ERRORS" "$LOG" "$REPORTS"/*; then
    echo "sanitize.sh: sanitizer reports (UBSan's in $LOG):" >&2
    for report in "$REPORTS"/*; do
        if grep -q -s -E "$ERRORS" "$report"; then
            echo "----- $report" >&2
            cat "$report" >&2
        fi
    done
    echo "----- summary" >&2
    grep -h -s -E "$ERRORS" "$LOG" "$REPORTS"/* | sort | uniq -c >&2 || true
    [ "$status" -ne 0 ] || status=1
else
    echo "sanitize.sh: no AddressSanitizer or UndefinedBehaviorSanitizer reports"
fi
exit "$status"
