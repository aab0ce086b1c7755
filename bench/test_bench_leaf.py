"""leaf, leaf-map, leaf-numpy: ns per leaf Value, made (and dropped) inside the timed region.

* leaf       -- `Value(x)` through the type call, in a loop;
* leaf-map   -- `list(map(Value, row))` over 64-float rows;
* leaf-numpy -- `Value(np.float64(x))` (skipped without numpy).
"""
import pytest


@pytest.mark.parametrize("workload", ["leaf", "leaf-map", "leaf-numpy"])
def test_leaf(workload, make_case, run_case, sizes):
    case = make_case(workload)
    assert case.count == sizes["leaves"] - sizes["leaves"] % 64
    result = run_case(case)
    assert result["data_ok"]  # the last leaf (row) holds the numbers it was given
    assert result["grads"] == [0.0]
