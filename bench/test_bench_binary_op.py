"""binary-op: ns per op of `x = x * a + b` repeated inside a function (forward only)."""
import math

from micrograd_fast import benchmark as mb


def test_binary_op(make_case, sizes, run_case):
    result = run_case(make_case("binary-op"))
    # every engine computes the same float recurrence (it converges to 0.5)
    assert math.isclose(result["data"], result["expected"], rel_tol=1e-12)
    assert result["expected"] == mb.binary_op_expected(sizes["binop_steps"])
