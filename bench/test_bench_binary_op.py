"""binary-op: ns per op of `x = x * a + b` repeated inside a function (forward only)."""
import math

from micrograd_fast import benchmark as mb


def test_binary_op(bench_engine, sizes, run_case):
    case = mb.make_case("binary-op", bench_engine, sizes)
    result = run_case(case)
    # every engine computes the same float recurrence (it converges to 0.5)
    assert math.isclose(result["data"], result["expected"], rel_tol=1e-12)
    assert result["expected"] == mb.binary_op_expected(sizes["binop_steps"])
