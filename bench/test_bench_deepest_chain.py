"""deepest-chain: the deepest chain x = x + a (10^3 ... 10^7 nodes by decades) each engine can
build, run backward() on and free; each attempt in a subprocess with a timeout. Pure-Python
engines and torch stop at 10^6 (time and memory), and every engine has a time budget.
The time pytest-benchmark shows is the wall time of all attempts; the depth is in extra_info and
in the closing summary."""
from micrograd_fast import benchmark as mb


def test_deepest_chain(bench_engine, sizes, benchmark, record_result):
    name = bench_engine.name
    cap = mb.chain_cap(bench_engine.kind, sizes)
    benchmark.group = "deepest-chain"
    result = benchmark.pedantic(
        mb.deepest_chain, args=(name, cap, sizes["chain_timeout"], sizes["chain_budget"]),
        rounds=1, iterations=1)
    benchmark.extra_info.update(result, engine=name, unit="nodes")
    record_result("deepest-chain", name, result["deepest"], result["deepest"], result)
    statuses = list(result["attempts"].values())
    assert "wrong gradient" not in statuses  # a chain that runs must give d x / d a = n
    assert result["deepest"] in [0] + [10 ** e for e in range(3, cap + 1)]
    if name in ("fast", "reference"):
        # our engines never recurse: they fail only by running out of time, not with an error
        assert not any(s.startswith("error") for s in statuses), result
