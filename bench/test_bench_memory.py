"""memory: bytes per node of an `x = x * a + b` chain (10^6 nodes at full size), in a fresh
process: tracemalloc for the pure-Python engines, growth of the resident set for the compiled
engine and torch. The time pytest-benchmark shows is the measuring subprocess's wall time; the
bytes per node are in extra_info and in the closing summary."""
from micrograd_fast import benchmark as mb


def test_memory(bench_engine, sizes, benchmark, record_result):
    name = bench_engine.name
    benchmark.group = "memory"
    result = benchmark.pedantic(mb.measure_memory, args=(name, sizes["mem_nodes"]), rounds=1,
                                iterations=1)
    benchmark.extra_info.update(result, engine=name, unit="B/node")
    record_result("memory", name, result["bytes_per_node"], result["bytes_per_node"], result)
    assert result["nodes"] == sizes["mem_nodes"] // 2 * 2
    assert result["data"] == mb.binary_op_expected(sizes["mem_nodes"] // 2)
    assert result["method"] == ("tracemalloc" if name in mb.PYTHON_ENGINES else "rss")
    assert result["bytes_per_node"] > 0
    if bench_engine.kind == "compiled":
        assert result["arena_bytes_per_node"] > 0
