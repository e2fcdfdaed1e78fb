#!/usr/bin/env bash
# Build convt_blas with AddressSanitizer + UndefinedBehaviorSanitizer in a separate
# tree and run the test suite under it.
#
#   tools/sanitize.sh                 # whole suite
#   tools/sanitize.sh -k fuzz -x      # extra arguments go to pytest
#
# Environment: PYTHON (default python3), CC (default cc), CONVT_BLAS_SANITIZE_DIR
# (default build/sanitize), CONVT_BLAS_FUZZ_EXAMPLES (examples per fuzz test).
# The tree that the normal build and the tests use is left as it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
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
if ! nm -D "$EXTENSION" | grep -q __asan_report; then
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
# ASan stops a process at its first error; UBSan reports and goes on, so one run
#   lists every report (both write to standard error, kept in $LOG).
# PYTHONMALLOC=malloc: every Python object comes from ASan's malloc too.
LOG=$TREE/sanitizer.log
export LD_PRELOAD="$PRELOAD${LD_PRELOAD:+:$LD_PRELOAD}"
ASAN_DEFAULTS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1
export ASAN_OPTIONS="$ASAN_DEFAULTS${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc

# The sanitized copy must be the one imported (the current directory comes first).
"$PYTHON" -c "import convt_blas.kernels as k, os, sys; \
assert os.path.dirname(os.path.dirname(k.__file__)) == os.getcwd(), k.__file__; \
print('sanitized build:', k.__file__)"
# Canary: a write one element past an array, through the raw kernel entry point
# (no argument checks), must be reported, or a clean run below would mean nothing.
CANARY=$(ASAN_OPTIONS=detect_leaks=0 "$PYTHON" - 2>&1 <<'EOF' || true
import numpy as np
from convt_blas import kernels
params = (1, 1, 64, 1, 3, 1, 0, 0, 1, 1)  # output length 66
workspace = np.empty(kernels.plan_sizes(params)[1], np.float32)
out = np.empty((1, 1, 65), np.float32)
kernels.run(params, np.ones((1, 1, 64), np.float32), (64, 64, 1),
            np.ones((1, 1, 3), np.float32), None, out, workspace, 1)
EOF
)
if grep -q "heap-buffer-overflow" <<< "$CANARY"; then
    echo "sanitize.sh: canary caught (an out-of-bounds write is reported)"
else
    echo "sanitize.sh: the canary out-of-bounds write was not reported" >&2
    exit 1
fi

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
# --capture=sys: what the sanitizers write to file descriptor 2 is not captured
# by pytest, so it reaches the terminal and the log.
status=0
PATH=$SHIMS:$PATH "$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys tests "$@" \
    2> >(tee "$LOG" >&2) || status=$?
wait  # for tee
if grep -q -E "ERROR: AddressSanitizer|runtime error:" "$LOG"; then
    echo "sanitize.sh: sanitizer reports (full log: $LOG):" >&2
    grep -E "ERROR: AddressSanitizer|runtime error:" "$LOG" | sort | uniq -c >&2
    [ "$status" -ne 0 ] || status=1
else
    echo "sanitize.sh: no AddressSanitizer or UndefinedBehaviorSanitizer reports"
fi
exit "$status"
