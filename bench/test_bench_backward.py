"""backward-*: backward() per graph shape, each its own group; every round's graph is built from
fresh leaves in the untimed setup, and only backward() is timed.

* backward-layered -- ns/node: layers of y_i = (x_i + x_{i+1}) * h over 1000 leaves, summed by
  a balanced tree (~102k nodes, depth ~110);
* backward-tree    -- ns/node: products of pairs, products of those, then a balanced sum;
* backward-chain   -- ns/node: x = x * a + b, 10^6 nodes deep (10^5 on the pure-Python
  engines; upstream micrograd's recursive sort runs in a thread with a big stack);
* backward-fanout  -- ns/node: one leaf x in every product x * w_i, then a balanced sum;
* backward-mlp     -- µs per backward() of the demo's loss graph (each engine's own graph).
"""
import math

import pytest

from micrograd_fast import benchmark as mb


def test_backward_layered(make_case, run_case):
    result = run_case(make_case("backward-layered"))
    # d out / d leaf = (2h)^layers = 1 exactly, d out / d h = 2 * layers * sum(leaves):
    # one backward() per fresh graph, so nothing accumulated twice
    assert result["leaf_grads"] == [1.0]
    assert math.isclose(result["h_grad"], result["h_grad_expected"], rel_tol=1e-9, abs_tol=1e-9)


def test_backward_tree(make_case, run_case, sizes):
    result = run_case(make_case("backward-tree"))
    assert result["leaves"] == sizes["tree_leaves"]
    assert result["grad_mismatches"] == 0  # each leaf: the product of the other three of its group


def test_backward_chain(make_case, run_case):
    result = run_case(make_case("backward-chain"))
    assert result["data"] == result["data_expected"]
    assert result["b_grad"] == result["b_grad_expected"]  # powers of 1/2, added top-down: exact
    assert math.isclose(result["a_grad"], result["a_grad_expected"], rel_tol=1e-12)


def test_backward_fanout(make_case, run_case):
    result = run_case(make_case("backward-fanout"))
    assert result["w_grads"] == [result["x_data"]]
    assert math.isclose(result["x_grad"], result["x_grad_expected"], rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(scope="session")
def reference_mlp_backward(sizes):
    """backward-mlp's loss and gradients on the reference engine: every engine must match."""
    case = mb.make_case("backward-mlp", mb.load_engine("reference"), sizes)
    case.setup()
    case.run()
    result = case.check()
    case.release()
    return result


def test_backward_mlp(make_case, run_case, reference_mlp_backward):
    result = run_case(make_case("backward-mlp"))
    assert result["parameters"] == 337
    assert math.isclose(result["loss"], reference_mlp_backward["loss"], rel_tol=1e-9)
    assert math.isclose(result["grad_sq_sum"], reference_mlp_backward["grad_sq_sum"],
                        rel_tol=1e-9)


def test_backward_graph_sizes(sizes):
    """The node counts used for ns/node are the graphs' real sizes (counted on the reference)."""
    engine = mb.load_engine("reference")
    graphs = {
        "layered": mb.build_backward_graph(engine, sizes["bw_width"], sizes["bw_layers"]),
        "tree": mb.build_tree_graph(engine, sizes["tree_leaves"]),
        "fanout": mb.build_fanout_graph(engine, sizes["fanout"]),
        "chain": mb.build_chain_graph(engine, 1000),
    }
    for shape, graph in graphs.items():
        out, nodes = graph[0], graph[-1]
        seen, stack = {id(out)}, [out]
        while stack:
            for child in stack.pop()._prev:
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append(child)
        assert len(seen) == nodes, shape
