#!/usr/bin/env bash
# Runs tests on the compiled engine under valgrind memcheck, against a debug build (-O1 -g) of
# the extension made in a scratch copy of the checkout (the checkout itself is never rebuilt).
#
#   tools/memcheck.sh                       # the suite's [c] tests, except the slow ones
#   tools/memcheck.sh tests/test_fuzz.py    # any pytest arguments
#
# Environment: MEMCHECK_DIR (scratch dir, default: a new mktemp dir), MGF_FUZZ_EXAMPLES (fuzz
# budget under valgrind, default 25). Needs valgrind, a C compiler and Cython.
# Python runs with PYTHONMALLOC=malloc so valgrind sees every allocation. CPython itself reports
# a few harmless errors (e.g. int.from_bytes reading uninitialised digits at startup), so the
# verdict comes from tools/memcheck_report.py: it counts only the errors and definite leaks whose
# stacks (including "freed at" / "allocated at") pass through the extension, and exits 1 if any.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MEMCHECK_DIR:-$(mktemp -d /tmp/mgf-memcheck.XXXXXX)}
PY=$(python -c 'import sys; print(sys.executable)')  # the real binary, not a pyenv/venv shim script

echo "memcheck: copying the checkout to $WORK"
mkdir -p "$WORK"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T -) \
    | tar -xf - -C "$WORK"
rm -f "$WORK"/src/micrograd_fast/*.c "$WORK"/micrograd_fast/*.so

echo "memcheck: debug build"
(cd "$WORK" && MICROGRAD_FAST_DEBUG_BUILD=1 "$PY" setup.py -q build_ext --inplace >build.log 2>&1) \
    || { cat "$WORK/build.log"; exit 2; }

if [ "$#" -eq 0 ]; then
    # [c] tests, not the slow ones (10**7-node chains, benchmarks, wheel builds: hours under
    # valgrind); the wheel/sdist and mypy tests only run subprocesses anyway
    set -- tests -k "not py]" -m "not slow" --ignore=tests/test_benchmark_smoke.py \
        --ignore=tests/test_distribution.py --ignore=tests/test_typing.py
fi

echo "memcheck: valgrind, logs in $WORK/valgrind.*.log (this is ~50x slower than a normal run)"
rm -f "$WORK"/valgrind.*.log
status=0
(cd "$WORK" && PYTHONMALLOC=malloc PYTHONPATH="$WORK" \
    MGF_FUZZ_EXAMPLES="${MGF_FUZZ_EXAMPLES:-25}" \
    valgrind --tool=memcheck --trace-children=no --num-callers=40 \
        --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --suppressions="$ROOT/tools/valgrind-python.supp" \
        --log-file="$WORK/valgrind.%p.log" \
        "$PY" -m pytest -p no:cacheprovider -q "$@") || status=$?
echo "memcheck: pytest exit status $status"
"$PY" "$ROOT/tools/memcheck_report.py" "$WORK"/valgrind.*.log || status=1
exit "$status"
