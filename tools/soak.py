"""Soak test: many demo training steps in one process, memory sampled as it goes.

    python tools/soak.py                      # 10,000 steps of the demo (MLP(2,[16,16,1]), 100 moons)
    python tools/soak.py --steps 50000 --every 500 --max-growth-mb 2

Every --every steps it samples the resident set size (from /proc/self/statm) and, for the compiled
engine, arena_stats(). After --warmup steps memory must stay flat: the run fails (exit 1) when
RSS grows by more than --max-growth-mb over its value after warm-up, or when the arena's live node
count at the sampling points grows (a node leak). Linux only (/proc).
"""
import argparse
import gc
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from micrograd_fast import demo  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--every", type=int, default=250, help="sample every N steps")
    p.add_argument("--warmup", type=int, default=1000, help="steps before the RSS baseline")
    p.add_argument("--max-growth-mb", type=float, default=4.0,
                   help="allowed RSS growth after warm-up (allocator noise)")
    p.add_argument("--engine", choices=demo.ENGINES, default="fast")
    p.add_argument("--samples", type=int, default=100, help="moons data points")
    args = p.parse_args(argv)
    if args.steps <= args.warmup:
        p.error(f"--steps ({args.steps}) must be more than --warmup ({args.warmup}): memory is "
                "compared after the warm-up")

    Value, nn = demo.load_engine(args.engine)
    stats = None
    if args.engine == "fast":
        from micrograd_fast import engine

        stats = getattr(getattr(engine, "_compiled", None), "arena_stats", None)
    random.seed(1337)
    model = nn.MLP(2, [16, 16, 1])
    X, y = demo.make_moons(n_samples=args.samples, noise=0.1)

    samples = []  # (step, rss, live nodes, arena capacity)
    t0 = time.perf_counter()
    loss = acc = None
    for k in range(args.steps):
        loss, acc = demo.train_step(model, X, y, Value, k, args.steps)
        if (k + 1) % args.every == 0 or k == args.warmup - 1:
            st = stats() if stats else {}
            samples.append((k + 1, rss_bytes(), st.get("live"), st.get("capacity")))
    elapsed = time.perf_counter() - t0
    gc.collect()

    mb = 1 / (1024 * 1024)
    base = next(s for s in samples if s[0] >= args.warmup)
    after = [s for s in samples if s[0] >= args.warmup]
    peak = max(after, key=lambda s: s[1])
    growth = after[-1][1] - base[1]
    print(f"soak: {args.steps} steps of the demo on the {args.engine} engine in {elapsed:.1f} s "
          f"({1e3 * elapsed / args.steps:.2f} ms/step); final loss {loss:.6f}, accuracy {acc:.0%}")
    print(f"  RSS after warm-up ({base[0]} steps): {base[1] * mb:.1f} MiB; max after warm-up "
          f"{peak[1] * mb:.1f} MiB (step {peak[0]}); final {after[-1][1] * mb:.1f} MiB; "
          f"growth {growth * mb:+.2f} MiB (limit {args.max_growth_mb} MiB)")
    failed = growth * mb > args.max_growth_mb or (peak[1] - base[1]) * mb > args.max_growth_mb
    if stats:
        lives = {s[2] for s in after}
        caps = {s[3] for s in after}
        print(f"  arena at the samples: live nodes {sorted(lives)}, capacity {sorted(caps)}, "
              f"final {stats()}")
        if max(s[2] for s in after) > base[2]:
            print("  FAIL: the arena's live node count grew after warm-up")
            failed = True
    print("  samples (step: RSS MiB / live nodes): " + ", ".join(
        f"{s[0]}: {s[1] * mb:.1f}/{s[2]}" for s in samples[:: max(1, len(samples) // 12)]))
    if failed:
        print("soak: FAIL (memory grew after warm-up)")
        return 1
    print("soak: OK (flat after warm-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
