"""demo-step: ms per training step of micrograd's demo, MLP(2, [16, 16, 1]) on moons points:
forward + SVM loss + L2, zero_grad, backward, SGD update (micrograd_fast.demo.train_step).

demo-step-replayed: ms per step when micrograd_fast replays one retained graph (recompute(),
zero_grad, backward, optimizer step), against the other engines' eager step; skipped until
Value.recompute and micrograd_fast.optim exist."""
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


def test_demo_step(make_case, run_case, reference_first_loss):
    result = run_case(make_case("demo-step"))
    assert result["parameters"] == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1  # 337
    # same seed, same weights, same math: the same starting loss on every engine
    assert math.isclose(result["first_loss"], reference_first_loss, rel_tol=1e-9)
    assert math.isclose(result["first_step_loss"], reference_first_loss, rel_tol=1e-9)
    assert math.isfinite(result["last_loss"])


def test_demo_step_replayed(make_case, run_case, reference_first_loss):
    result = run_case(make_case("demo-step-replayed"))
    assert result["parameters"] == 337
    # the first replayed step evaluates the untrained model: the demo's starting loss
    assert math.isclose(result["first_step_loss"], reference_first_loss, rel_tol=1e-9)
    assert math.isfinite(result["last_loss"])


def test_demo_step_own_nn(make_case, run_case, reference_first_loss):
    result = run_case(make_case("demo-step-own-nn"))
    assert result["parameters"] == 337
    # micrograd's nn.py code, micrograd's draws: the demo's starting loss again
    assert math.isclose(result["first_step_loss"], reference_first_loss, rel_tol=1e-9)
    assert math.isfinite(result["last_loss"])
