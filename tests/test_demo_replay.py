"""`python -m micrograd_fast demo --replay / --optim`: the replayed loop (graph built once;
recompute + zero_grad + backward + optimizer step) gives the eager loop's losses bit for bit."""
import random

import pytest

from micrograd_fast import demo


def history(engine, steps, n=100, **kwargs):
    X, y = demo.make_moons(n_samples=n, seed=1337)
    random.seed(1337)
    model = engine.nn.MLP(2, [16, 16, 1])
    hist = demo.train(model, X, y, engine.Value, steps, progress=False, **kwargs)
    return hist, [p.data for p in model.parameters()]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_replayed_equals_eager(engine, optimizer):
    steps, n = (100, 100) if engine.name == "c" else (3, 20)
    eager_sgd = None if optimizer == "sgd" else optimizer  # sgd eager: the notebook's own loop
    eager, eager_params = history(engine, steps, n, optimizer=eager_sgd)
    replayed, replayed_params = history(engine, steps, n, optimizer=optimizer, replay=True)
    assert replayed == eager
    assert replayed_params == eager_params
    assert len(replayed) == steps
    if engine.name == "c":
        assert eager[-1][1] >= 0.95 and eager[-1][0] < eager[0][0] / 10  # it learns


def test_cli(capsys):
    assert demo.main(["--steps", "4", "--no-progress", "--replay"]) == 0
    replayed = capsys.readouterr().out
    assert demo.main(["--steps", "4", "--no-progress"]) == 0
    eager = capsys.readouterr().out
    assert replayed.splitlines()[1] == eager.splitlines()[1]  # final loss and accuracy
    assert demo.main(["--steps", "4", "--no-progress", "--optim", "adam", "--engine",
                      "reference", "--samples", "10"]) == 0
    assert "final loss" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.main(["--engine", "micrograd", "--replay"])


def test_readme_loops():
    """The README's eager and replayed loops run, and end with the same parameters."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text.split("## Training without Python per node", 1)[1].split("\n## ", 1)[0]
    eager, replayed = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    ns = {}
    random.seed(5)
    exec(eager, ns)
    eager_params = [p.data for p in ns["model"].parameters()]
    random.seed(5)
    exec(replayed, ns)
    assert [p.data for p in ns["model"].parameters()] == eager_params
    assert ns["final_acc"] >= 0.95 and ns["final_loss"]._prev == set()
