"""digits-step: ms per minibatch step (32 samples) of MLP(64, [32, 10]) on scikit-learn's
bundled 8x8 digits (pixels / 16): multi-class hinge loss written with relu (so upstream micrograd
runs the same step) + L2, zero_grad, backward, plain SGD. Skipped without scikit-learn
(`pip install "micrograd_fast[bench]"`)."""
import math

import pytest

from micrograd_fast import benchmark as mb


@pytest.fixture(scope="session")
def reference_first_digits_loss(sizes):
    """The first minibatch's loss on the reference engine: every engine must start there."""
    try:
        case = mb.make_case("digits-step", mb.load_engine("reference"), sizes)
    except mb.WorkloadUnavailable as exc:
        pytest.skip(str(exc))
    case.run()
    return case.check()["first_step_loss"]


def test_digits_step(make_case, run_case, reference_first_digits_loss):
    result = run_case(make_case("digits-step"))
    assert result["parameters"] == 64 * 32 + 32 + 32 * 10 + 10  # 2,410
    assert math.isclose(result["first_step_loss"], reference_first_digits_loss, rel_tol=1e-9)
    assert math.isfinite(result["last_loss"])
