#!/usr/bin/env bash
# Runs tests on the compiled engine under a memory checker, against a debug build (-O1 -g) of
# the extension made in a scratch copy of the checkout (the checkout itself is never rebuilt).
#
#   tools/memcheck.sh                        # valgrind memcheck, the suite's [c] tests (not slow)
#   tools/memcheck.sh tests/test_fuzz.py     # any pytest arguments
#   MEMCHECK_TOOL=asan tools/memcheck.sh     # AddressSanitizer instead (gcc; ~2x, not ~50x slower)
#
# Environment: MEMCHECK_DIR (scratch dir, default: a new mktemp dir), MGF_FUZZ_EXAMPLES (fuzz
# budget, default 25 under valgrind, 1000 under ASan). Needs a C compiler, Cython, and valgrind
# or gcc's libasan. Python runs with PYTHONMALLOC=malloc so the checker sees every allocation.
#
# valgrind: CPython itself reports a few harmless errors (e.g. int.from_bytes reading an
# uninitialised digit at startup), so the verdict comes from tools/memcheck_report.py: it counts
# only the errors and definite leaks whose stacks (including "freed at" / "allocated at") pass
# through the extension, and exits 1 if there is any. ASan aborts at the first error it finds.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOL=${MEMCHECK_TOOL:-valgrind}
WORK=${MEMCHECK_DIR:-$(mktemp -d /tmp/mgf-memcheck.XXXXXX)}
PY=$(python -c 'import sys; print(sys.executable)')  # the real binary, not a pyenv/venv shim script

echo "memcheck: copying the checkout to $WORK"
mkdir -p "$WORK"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T -) \
    | tar -xf - -C "$WORK"
rm -f "$WORK"/src/micrograd_fast/*.c "$WORK"/micrograd_fast/*.so

echo "memcheck: debug build ($TOOL)"
if [ "$TOOL" = asan ]; then
    export CFLAGS="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address"
fi
(cd "$WORK" && MICROGRAD_FAST_DEBUG_BUILD=1 "$PY" setup.py -q build_ext --inplace >build.log 2>&1) \
    || { cat "$WORK/build.log"; exit 2; }

if [ "$#" -eq 0 ]; then
    # [c] tests, not the slow ones (10**7-node chains, benchmarks, wheel builds: hours under
    # valgrind); the wheel/sdist and mypy tests only run subprocesses anyway
    set -- tests -k "not py]" -m "not slow" --ignore=tests/test_benchmark_smoke.py \
        --ignore=tests/test_distribution.py --ignore=tests/test_typing.py
fi

cd "$WORK"
export PYTHONMALLOC=malloc PYTHONPATH="$WORK" MGF_FUZZ_SHRINK=0
status=0
if [ "$TOOL" = asan ]; then
    echo "memcheck: AddressSanitizer"
    LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
        MGF_FUZZ_EXAMPLES="${MGF_FUZZ_EXAMPLES:-1000}" \
        "$PY" -m pytest -p no:cacheprovider -q "$@" || status=$?
    echo "memcheck: pytest exit status $status (an ASan report above, if any, is the finding)"
    exit "$status"
fi

echo "memcheck: valgrind, logs in $WORK/valgrind.*.log (this is ~50x slower than a normal run)"
rm -f "$WORK"/valgrind.*.log
MGF_FUZZ_EXAMPLES="${MGF_FUZZ_EXAMPLES:-25}" \
    valgrind --tool=memcheck --trace-children=no --num-callers=40 \
        --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --suppressions="$ROOT/tools/valgrind-python.supp" \
        --log-file="$WORK/valgrind.%p.log" \
        "$PY" -m pytest -p no:cacheprovider -q "$@" || status=$?
echo "memcheck: pytest exit status $status"
"$PY" "$ROOT/tools/memcheck_report.py" "$WORK"/valgrind.*.log || status=1
exit "$status"
