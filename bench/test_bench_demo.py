"""demo-step: ms per training step of micrograd's demo, MLP(2, [16, 16, 1]) on moons points:
forward + SVM loss + L2, zero_grad, backward, SGD update (micrograd_fast.demo.train_step)."""
import math

import pytest

from micrograd_fast import benchmark as mb
from micrograd_fast import demo


@pytest.fixture(scope="session")
def reference_first_loss(sizes):
    """The loss before training, on the reference engine: every engine must start there."""
    import random

    engine = mb.load_engine("reference")
    X, y = demo.make_moons(n_samples=sizes["demo_points"], seed=1337)
    random.seed(1337)
    model = engine.nn.MLP(2, [16, 16, 1])
    return demo.svm_loss(model, X, y, engine.Value)[0].data


def test_demo_step(bench_engine, sizes, run_case, reference_first_loss):
    case = mb.make_case("demo-step", bench_engine, sizes)
    result = run_case(case)
    assert result["parameters"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1  # 337
    # same seed, same weights, same math: the same starting loss on every engine
    assert math.isclose(result["first_loss"], reference_first_loss, rel_tol=1e-9)
    assert math.isfinite(result["last_loss"])
