"""`python -m micrograd_fast digits`: the 8x8 digits classifier trained with cross_entropy.

Short runs (a few minibatches) on both engines give the same losses bit for bit; a missing
scikit-learn is a clear message and exit status 1; --plot writes a PNG; the default run reaches
the accuracy the README quotes.
"""
import random
import sys

import pytest

from micrograd_fast import digits
from micrograd_fast.__main__ import USAGE, main as cli

pytest.importorskip("sklearn", reason='needs scikit-learn: pip install "micrograd_fast[demo]"')


@pytest.fixture(scope="module")
def data():
    full = digits.load_data(seed=3)
    return digits.Data(full.X_train, full.y_train, full.X_test[:40], full.y_test[:40])


def test_data_split(data):
    full = digits.load_data(seed=3)
    assert len(full.X_train) + len(full.X_test) == 1797
    assert len(full.X_test) == 359 and all(len(row) == 64 for row in full.X_train)
    assert all(0.0 <= v <= 1.0 for row in full.X_test for v in row)
    assert set(full.y_train) == set(range(10))
    assert digits.load_data(seed=3).y_test == full.y_test  # seeded
    assert digits.load_data(seed=4).y_test != full.y_test


def short_run(engine_name, data, optim="sgd", batches=3):
    engine = digits.load_engine(engine_name)
    random.seed(5)
    model = engine.nn.MLP(64, [8, 10])
    optimizer = digits.make_optimizer(optim, model.parameters(), 0.1)
    history = digits.train(engine, model, data, epochs=2, batch=8, optimizer=optimizer, seed=5,
                           max_batches=batches, progress=False)
    return history, [p.data for p in model.parameters()]


def test_short_run_equal_on_both_engines(data):
    fast, fast_params = short_run("fast", data)
    ref, ref_params = short_run("reference", data)
    assert len(fast.batch_loss) == 6
    assert fast.batch_loss == ref.batch_loss  # bit for bit
    assert fast_params == ref_params
    assert fast.test_acc == ref.test_acc and fast.predictions == ref.predictions
    assert fast.epoch_loss[-1] < fast.batch_loss[0]


def test_hinge_loss_on_upstream_micrograd(data):
    pytest.importorskip("micrograd")
    history, _ = short_run("micrograd", digits.Data(data.X_train, data.y_train, data.X_test[:4],
                                                    data.y_test[:4]), batches=1)
    assert len(history.batch_loss) == 2 and all(loss >= 0 for loss in history.batch_loss)
    engine = digits.load_engine("fast")  # the hinge loss itself, with relu only
    s = [engine.Value(x) for x in (1.0, 3.0, 2.5)]
    assert digits.hinge_loss(s, 1).data == 0.5  # relu(1 + 1 - 3) + relu(1 + 2.5 - 3)


def test_missing_sklearn_is_a_clear_message(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # import fails
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert cli(["digits", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "scikit-learn" in err and 'pip install "micrograd_fast[demo]"' in err


def test_adam_without_optim_module_is_a_clear_error(data):
    try:
        import micrograd_fast.optim  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="--optim adam needs micrograd_fast.optim"):
            digits.make_optimizer("adam", [], 1e-3)
    else:  # the optimizer exists: a short run with it trains
        history, _ = short_run("fast", data, optim="adam")
        assert history.epoch_loss[-1] < history.batch_loss[0]


def test_command_line_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "digits.png"
    assert cli(["digits", "--epochs", "1", "--batches", "4", "--hidden", "8", "--test-digits",
                "30", "--no-progress", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "MLP(64, [8, 10])" in out and "test accuracy" in out
    assert "s per shortened epoch (4 batches)" in out
    assert "a full epoch would take about" in out  # 4 of 90 batches
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert "digits" in USAGE


def test_bad_options(capsys):
    with pytest.raises(SystemExit):
        cli(["digits", "--epochs", "0"])
    with pytest.raises(SystemExit):
        cli(["digits", "--optim", "rmsprop"])
    assert "--epochs must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_default_run_reaches_95_percent():
    """The defaults (30 epochs, batches of 16, Adam 3e-3, seed 1337) as the README says, and the
    lecture's SGD (0.15 decaying to a tenth)."""
    engine = digits.load_engine("fast")
    data = digits.load_data(1337)
    for name, lr, decay in (("adam", 3e-3, False), ("sgd", 0.15, True)):
        random.seed(1337)
        model = engine.nn.MLP(64, [32, 10])
        optimizer = digits.make_optimizer(name, model.parameters(), lr)
        history = digits.train(engine, model, data, 30, 16, optimizer, 1337, progress=False,
                               decay=decay)
        assert history.test_acc[-1] >= 0.95, name


def test_more_bad_options_fail_before_training(capsys, tmp_path):
    for args, message in [(["digits", "--lr", "-1"], "--lr must be positive"),
                          (["digits", "--plot", str(tmp_path / "no" / "x.png")], "there is no folder"),
                          (["demo", "--samples", "0"], "--samples must be at least 2"),
                          (["demo", "--plot", str(tmp_path / "no" / "x.png")], "there is no folder"),
                          (["demo", "--plot", str(tmp_path / "x.xyz")], "does not write .xyz"),
                          (["digits", "--plot", str(tmp_path)], "that is a folder"),
                          (["bench", "--json", str(tmp_path / "no" / "b.json")],
                           "there is no folder"),
                          (["bench", "--plot", str(tmp_path / "x.xyz")], "does not write .xyz")]:
        with pytest.raises(SystemExit) as exc:
            cli(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_plot_without_extension_is_a_png_and_said_so(capsys, tmp_path):
    assert cli(["demo", "--steps", "1", "--samples", "8", "--no-progress",
                "--plot", str(tmp_path / "curves")]) == 0
    assert f"plot saved to {tmp_path / 'curves.png'}" in capsys.readouterr().out
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_on_upstream_micrograd_defaults_to_sgd(capsys):
    pytest.importorskip("micrograd.engine")
    assert cli(["digits", "--engine", "micrograd", "--batches", "1", "--hidden", "4",
                "--test-digits", "5", "--no-progress"]) == 0
    assert "; sgd lr " in capsys.readouterr().out


def test_cli_without_a_command_and_version(capsys):
    import micrograd_fast
    assert cli([]) == 2
    assert "usage:" in capsys.readouterr().err
    assert cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"micrograd_fast {micrograd_fast.__version__} (")
