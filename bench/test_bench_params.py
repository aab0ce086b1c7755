"""param-loop, zero-grad, optimizer-step: the per-parameter loops of a training step, over the
demo model's 337 parameters (MLP(2, [16, 16, 1])), repeated `reps` times per round.

* param-loop     -- µs per `for p in params: p.data -= lr * p.grad`;
* zero-grad      -- µs per `model.zero_grad()`;
* optimizer-step -- ns per parameter of micrograd_fast.optim.SGD.step() (torch.optim.SGD for
  torch, the param-loop's loop elsewhere); skipped until micrograd_fast.optim exists.
"""


def test_param_loop(make_case, run_case):
    result = run_case(make_case("param-loop"))
    assert result["parameters"] == 337
    # the same float operations on every engine: the parameters end bit-identical
    assert result["exact_mismatches"] == 0


def test_zero_grad(make_case, run_case):
    result = run_case(make_case("zero-grad"))
    assert result["parameters"] == 337
    assert result["nonzero_grads"] == 0


def test_optimizer_step(make_case, run_case):
    result = run_case(make_case("optimizer-step"))
    assert result["parameters"] == 337
    assert result["max_rel_err"] <= 1e-12  # torch's rule p -= lr * g, maybe fused
