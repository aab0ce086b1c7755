"""backward: ns per node of backward() on a fresh, wide, shallow graph (~100k nodes at full size).

The graph is built in the untimed setup of each round; only backward() is timed.
"""
import math

from micrograd_fast import benchmark as mb


def test_backward(bench_engine, sizes, run_case):
    case = mb.make_case("backward", bench_engine, sizes)
    result = run_case(case)
    # d out / d leaf = (2h)^layers = 1 exactly, d out / d h = 2 * layers * sum(leaves):
    # one backward() per fresh graph, so nothing accumulated twice
    assert result["leaf_grads"] == [1.0]
    assert math.isclose(result["h_grad"], result["h_grad_expected"], rel_tol=1e-9, abs_tol=1e-9)


def test_backward_graph_size(sizes):
    """The node count used for ns/node is the graph's real size (counted on the reference)."""
    engine = mb.load_engine("reference")
    out, leaves, h, nodes = mb.build_backward_graph(engine, sizes["bw_width"],
                                                    sizes["bw_layers"])
    seen, stack = {id(out)}, [out]
    while stack:
        for child in stack.pop()._prev:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    assert len(seen) == nodes
