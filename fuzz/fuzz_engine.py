#!/usr/bin/env python3
"""Coverage-guided fuzz target: input bytes -> a small program of engine operations, run on the
compiled engine and on the reference engine in lockstep (tests/test_fuzz.py's interpreter).
A divergence (numbers, op names, labels, edges, exceptions), a leaked node or a crash fails.

    python fuzz/fuzz_engine.py -max_total_time=600 fuzz/corpus     # atheris (libFuzzer flags)
    python fuzz/fuzz_engine.py --random 100000                     # no atheris: random bytes

See fuzz/README.md. Run from the repository root (or anywhere: the root is put on sys.path).
"""
import gc
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

try:
    import atheris
except ImportError:  # the --random mode needs only the standard library
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():  # Python-level coverage guides the fuzzer
        import micrograd_fast.reference  # noqa: F401
        import test_fuzz as T
else:
    import test_fuzz as T

from micrograd_fast import engine  # noqa: E402

C = engine._load_compiled()

# the alphabet of the byte decoder: everything the hypothesis programs use
NUMS = [x for x in T.SPECIAL if x is not True] + [0.1, -2.5, 1.5, 4.0, -3.0]
LABELS = ["", "x", "w"]
TYPES_ONLY = os.environ.get("MGF_FUZZ_TYPES_ONLY") == "1"  # compare exception types, not args


class Bytes:
    """A reader over the input: small integers and numbers, zeros once exhausted."""

    def __init__(self, data):
        self.data, self.pos = data, 0

    def byte(self):
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def more(self):
        return self.pos < len(self.data)

    def pick(self, seq):
        return seq[self.byte() % len(seq)]

    def idx(self):
        return self.byte() | self.byte() << 8

    def num(self):
        b = self.byte()
        if b < 128:  # an "ordinary" number in [-4, 4) with 1/16 steps (exact in binary)
            return (b - 64) / 16.0
        if b < 160:  # a raw double from the next 8 bytes (any bit pattern: nan, inf, subnormal)
            return _double(bytes(self.byte() for _ in range(8)))
        return self.pick(NUMS)


def _double(raw):
    import struct

    return struct.unpack("<d", raw)[0]


def decode(data):
    """Bytes -> (leaves, program) in tests/test_fuzz.py's instruction format."""
    r = Bytes(data)
    leaves = [r.num() for _ in range(1 + r.byte() % 3)]
    leaves = [x if isinstance(x, float) else float(x) for x in leaves
              if not isinstance(x, int) or abs(x) < 1 << 50]
    prog = []
    while r.more() and len(prog) < 64:
        op = r.byte() % 22
        if op == 0:
            prog.append(("leaf", r.num(), r.pick(LABELS)))
        elif op in (1, 2, 3):
            prog.append(("bin", r.pick(T.BINOPS), r.idx(), r.idx()))
        elif op == 4:
            prog.append(("const", r.pick(T.BINOPS), r.idx(), r.num(), bool(r.byte() & 1)))
        elif op == 5:
            prog.append(("pow", r.idx(), r.pick(T.EXPONENTS)))
        elif op == 6:
            prog.append(("unary", r.pick(T.UNARY), r.idx()))
        elif op == 7:
            pairs = [(_operand(r), _operand(r)) for _ in range(r.byte() % 5)]
            prog.append(("dot", pairs, _operand(r)))
        elif op == 8:
            prog.append(("sum", [_operand(r) for _ in range(r.byte() % 6)], _operand(r)))
        elif op == 9:
            kids = [r.idx() for _ in range(r.byte() % 4)]
            prog.append(("hand", r.num(), kids, r.pick(T.CALLBACKS), r.pick(T.BUILD_SIZES),
                         r.pick(["op", "", "*"])))
        elif op == 10:
            prog.append(("assign", r.idx(), r.pick(T.CALLBACKS), r.idx(), r.idx(),
                         r.pick(T.BUILD_SIZES)))
        elif op in (11, 12, 13):
            prog.append(("backward", r.idx()))
        elif op == 14:
            prog.append(("local", r.idx()))
        elif op == 15:
            prog.append(("del", r.idx()))
        elif op == 16:
            prog.append(("setdata", r.idx(), r.num()))
        elif op == 17:
            prog.append(("setgrad", r.idx(), r.num()))
        elif op == 18:
            prog.append(("zero",))
        elif op == 19:
            prog.append(("label", r.idx(), r.pick(LABELS)))
        elif op == 20:
            prog.append(("adopt", r.idx()))
        else:
            prog.append(("inspect",) if r.byte() & 1 else ("gc",))
    return leaves or [0.5], prog


def _operand(r):
    return ("v", r.idx()) if r.byte() & 1 else r.num()


STATS = {"inputs": 0, "instructions": 0, "leak_checks": 0}
_dirty = []  # non-empty: the previous input made reference cycles (Python callbacks)


def one_input(data):
    """Run one input; raises on divergence or leak (the fuzzer records it as a crash)."""
    leaves, prog = decode(data)
    STATS["inputs"] += 1
    STATS["instructions"] += len(prog)
    callbacks = any(ins[0] in ("hand", "assign") for ins in prog)
    if _dirty:  # the last input's callbacks left cycles: collect them before counting
        T.live_nodes(C)
        _dirty.clear()
    if callbacks:
        _dirty.append(1)
    before = C.arena_stats()["live"]
    c, r = T.run_lockstep((leaves, prog), C)
    del c, r
    # without Python callbacks there is no reference cycle: every node must be gone right away
    if not callbacks:
        STATS["leak_checks"] += 1
        after = C.arena_stats()["live"]
        if after != before:
            raise AssertionError(f"leaked {after - before} node(s): {prog!r}")


if TYPES_ONLY:  # e.g. to keep fuzzing past a known wrong exception message
    _attempt = T.attempt

    def _types_only(tw, ins):
        got = _attempt(tw, ins)
        return None if got is None else (got[0], ())

    T.attempt = _types_only


def random_mode(count, seed):
    """No atheris: feed random byte strings (lengths 1..400) for `count` inputs."""
    import random

    rng = random.Random(seed)
    t0 = time.perf_counter()
    for n in range(count):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400)))
        try:
            one_input(data)
        except Exception:
            path = f"crash-random-{seed}-{n}"
            with open(path, "wb") as f:
                f.write(data)
            print(f"FAILED on input {n}, saved to {path}")
            raise
        if (n + 1) % 1000 == 0:
            print(f"#{n + 1} inputs, {STATS['instructions']} instructions, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    print(f"done: {STATS}")


def main():
    # the programs call gc.collect() often: freeze what the imports made, so that a collection
    # only traverses the objects made since (~100x faster)
    gc.collect()
    gc.freeze()
    if len(sys.argv) >= 2 and sys.argv[1] == "--random":
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
        random_mode(count, int(os.environ.get("MGF_FUZZ_SEED", "1")))
        return
    if len(sys.argv) >= 2 and sys.argv[1] == "--replay":  # run saved inputs, print programs
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                data = f.read()
            print(path, decode(data))
            one_input(data)
        print("replayed without failure")
        return
    if atheris is None:
        sys.exit("atheris is not installed (pip install atheris); use --random N instead")
    import atexit

    atexit.register(lambda: print(f"[fuzz_engine] {STATS}", file=sys.stderr))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
