"""custom-op-step: ms per training step of the micrograd lecture's MLP(3, [4, 4, 1]) on its 4
samples, where every neuron's tanh is a hand-built op -- ``Value(t, (x,), 'tanh')`` with a
Python ``_backward`` closure, as a script that defines its own op writes it -- then the squared-
error loss, grads set to 0.0, backward, ``p.data += -0.05 * p.grad``. The engine must call back
into Python for every tanh node, so this row shows how little a compiled engine can do there.
Skipped on torch (a tensor takes no hand-built op)."""
import math

import pytest

from micrograd_fast import benchmark as mb


@pytest.fixture(scope="session")
def reference_first_custom_op_loss():
    """The lecture's loss before any update on the reference engine: every engine must start
    there."""
    case = mb.make_case("custom-op-step", mb.load_engine("reference"), "smoke")
    case.run()
    return case.check()["first_step_loss"]


def test_custom_op_step(make_case, run_case, reference_first_custom_op_loss):
    result = run_case(make_case("custom-op-step"))
    assert result["parameters"] == 3 * 4 + 4 + 4 * 4 + 4 + 4 + 1  # 41
    assert math.isfinite(result["first_step_loss"])
    assert math.isclose(result["first_step_loss"], reference_first_custom_op_loss,
                        rel_tol=1e-12)
    assert math.isfinite(result["last_loss"])
