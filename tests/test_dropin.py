"""`python -m micrograd_fast run script.py` and install_as_micrograd(): unmodified micrograd scripts
get micrograd_fast, with the numbers upstream micrograd prints on the same script, and with argv,
__main__, exit codes and tracebacks of a direct run.

The scripts run in subprocesses (cwd = tmp_path, PYTHONPATH = this checkout, so the in-place build is
used); the same script under plain `python` imports the real, installed micrograd."""
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import micrograd_fast
import micrograd_fast.engine
import micrograd_fast.nn
from micrograd_fast.dropin import install_as_micrograd, run_main, uninstall_as_micrograd

REPO = Path(__file__).resolve().parent.parent

# micrograd's README example and a short version of its demo notebook (two-moons data made with
# `random` instead of sklearn), written against micrograd as its users write them. Numbers go to
# stdout; which engine served `micrograd` goes to stderr (it differs on purpose).
NOTEBOOK = textwrap.dedent('''
    import math
    import random
    import sys

    import micrograd
    import micrograd.nn as nn_alias
    from micrograd import nn
    from micrograd.engine import Value
    from micrograd.nn import Neuron, Layer, MLP

    # every import form must give the same objects
    assert micrograd.engine.Value is Value and nn.MLP is MLP is nn_alias.MLP is micrograd.nn.MLP
    print(Value.__module__, file=sys.stderr)

    # ---- README ----
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    print(f'{g.data:.4f}')  # prints 24.7041, the outcome of this forward pass
    g.backward()
    print(f'{a.grad:.4f}')  # prints 138.8338, i.e. the numerical value of dg/da
    print(f'{b.grad:.4f}')  # prints 645.5773, i.e. the numerical value of dg/db
    print(repr(g.data), repr(a.grad), repr(b.grad))

    # ---- demo notebook ----
    random.seed(1337)
    X, y = [], []
    for i in range(16):  # two noisy half moons
        t = math.pi * random.random()
        if i % 2:
            X.append([math.cos(t) + random.gauss(0, 0.1), math.sin(t) + random.gauss(0, 0.1)])
            y.append(-1)
        else:
            X.append([1 - math.cos(t) + random.gauss(0, 0.1), 0.5 - math.sin(t) + random.gauss(0, 0.1)])
            y.append(1)

    model = MLP(2, [16, 16, 1])  # 2-layer neural network
    print(model)
    print("number of parameters", len(model.parameters()))
    print(Neuron(3, nonlin=False), Layer(2, 2))

    def loss():
        inputs = [list(map(Value, xrow)) for xrow in X]
        scores = list(map(model, inputs))
        losses = [(1 + -yi*scorei).relu() for yi, scorei in zip(y, scores)]
        data_loss = sum(losses) * (1.0 / len(losses))
        alpha = 1e-4
        reg_loss = alpha * sum((p*p for p in model.parameters()))
        total_loss = data_loss + reg_loss
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(y, scores)]
        return total_loss, sum(accuracy) / len(accuracy)

    steps = 4
    for k in range(steps):
        total_loss, acc = loss()
        model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9*k/steps
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        print(f"step {k} loss {total_loss.data:.10f}, accuracy {acc*100}%")
''')

# what a script sees of how it was started; then it exits, raises or returns as argv asks
PROBE = textwrap.dedent('''
    import os, sys
    from micrograd.engine import Value

    def fail(x):
        raise LookupError(f"no weight {x}")

    print(__name__, sys.argv, __file__, sys.path[0], os.getcwd(), Value(0.5).data)
    if __name__ == "__main__":
        mode = sys.argv[1] if len(sys.argv) > 1 else ""
        if mode == "exit":
            sys.exit(int(sys.argv[2]))
        if mode == "raise":
            fail(Value(2.5).data)
''')


def _env(pure=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if pure is not None:
        env["MICROGRAD_FAST_PURE_PYTHON"] = "1" if pure else "0"
    return env


def _python(args, cwd, pure=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=_env(pure), capture_output=True,
                          text=True, timeout=300)


def _fast(args, cwd, pure=None):
    return _python(["-m", "micrograd_fast", "run", *args], cwd, pure)


@pytest.fixture(scope="module")
def upstream_notebook(tmp_path_factory):
    """The notebook script's output under plain python with the real micrograd (run once)."""
    pytest.importorskip("micrograd.engine")
    cwd = tmp_path_factory.mktemp("upstream")
    (cwd / "notebook.py").write_text(NOTEBOOK)
    result = _python(["notebook.py"], cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "micrograd.engine"  # really upstream's Value
    return result.stdout


# ---- the runner in a subprocess, against upstream micrograd ----

def test_notebook_prints_upstream_numbers(engine, tmp_path, upstream_notebook):
    (tmp_path / "notebook.py").write_text(NOTEBOOK)
    result = _fast(["notebook.py"], tmp_path, pure=engine.name == "py")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == engine.Value.__module__  # served by micrograd_fast
    ours, theirs = result.stdout.splitlines(), upstream_notebook.splitlines()
    # README: printed numbers, and the full-precision forward value, exactly
    assert ours[:3] == theirs[:3] == ["24.7041", "138.8338", "645.5773"]
    g, ga, gb = (float(s) for s in ours[3].split())
    ug, uga, ugb = (float(s) for s in theirs[3].split())
    assert g == ug
    assert ga == pytest.approx(uga, rel=1e-12) and gb == pytest.approx(ugb, rel=1e-12)
    # model reprs, parameter count and every training step's loss (10 digits) and accuracy
    assert ours[4:] == theirs[4:]
    assert len([line for line in ours if line.startswith("step ")]) == 4


def test_run_is_like_a_direct_run(tmp_path):
    """argv, __name__, __file__, sys.path[0], the traceback and the exit status of an uncaught
    exception: the same as `python probe.py raise x` with upstream micrograd."""
    pytest.importorskip("micrograd.engine")
    (tmp_path / "probe.py").write_text(PROBE)
    ours = _fast(["probe.py", "raise", "x"], tmp_path)
    theirs = _python(["probe.py", "raise", "x"], tmp_path)
    assert ours.stdout == theirs.stdout
    file, path0, cwd = tmp_path / "probe.py", tmp_path, tmp_path
    assert ours.stdout == f"__main__ ['probe.py', 'raise', 'x'] {file} {path0} {cwd} 0.5\n"
    # the whole traceback, line for line: it starts in the script, no frames of the runner
    assert ours.returncode == theirs.returncode == 1
    assert ours.stderr == theirs.stderr
    assert ours.stderr.startswith("Traceback (most recent call last):\n")
    assert ours.stderr.endswith("LookupError: no weight 2.5\n") and "dropin" not in ours.stderr


def test_run_exit_status_is_passed_through(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    result = _fast(["probe.py", "exit", "3"], tmp_path)
    assert result.returncode == 3
    assert result.stdout.startswith("__main__ ['probe.py', 'exit', '3'] ")
    assert result.stderr == ""


AT_EXIT_SCRIPT = textwrap.dedent('''
    import atexit
    import pickle
    import threading
    import time
    from micrograd.engine import Value

    class Checkpoint:
        def __init__(self, w):
            self.w = w

    w = Value(0.5)

    def save():  # runs after the script's code: __main__ and micrograd must still be its own
        import micrograd.nn
        blob = pickle.dumps(Checkpoint(w.data))
        print("atexit", pickle.loads(blob).w, micrograd.nn.MLP.__module__)

    def late():  # a thread still running when the script's code ends
        time.sleep(0.2)
        from micrograd.nn import MLP
        print("thread", MLP.__module__, type(pickle.loads(pickle.dumps(Checkpoint(1)))).__name__)

    atexit.register(save)
    threading.Thread(target=late).start()
''')


def test_run_keeps_the_scripts_world_until_the_process_ends(tmp_path):
    """atexit handlers and threads the script leaves running see its __main__ and micrograd
    served by micrograd_fast, as after `python script.py` they see the script's world."""
    (tmp_path / "at_exit.py").write_text(AT_EXIT_SCRIPT)
    result = _fast(["at_exit.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "thread micrograd_fast.nn Checkpoint", "atexit 0.5 micrograd_fast.nn"]


def test_run_gives_the_script_pythons_globals(tmp_path):
    (tmp_path / "names.py").write_text("print(sorted(k for k in globals() if k[:2] == '__'))\n")
    ours, theirs = _fast(["names.py"], tmp_path), _python(["names.py"], tmp_path)
    assert ours.returncode == theirs.returncode == 0
    assert ours.stdout == theirs.stdout and "__file__" in ours.stdout


def test_run_missing_script(tmp_path):
    result = _fast(["no_such_script.py"], tmp_path)
    assert result.returncode == 2
    assert "can't open file 'no_such_script.py'" in result.stderr
    assert "No such file or directory" in result.stderr and "Traceback" not in result.stderr


MICROGRAD_TESTS = textwrap.dedent('''
    # a test file written for micrograd (as its own test/test_engine.py)
    from micrograd.engine import Value

    def test_sanity_check():
        x = Value(-4.0)
        z = 2 * x + 2 + x
        q = z.relu() + z * x
        h = (z * z).relu()
        y = h + q + q * x
        y.backward()
        assert (y.data, x.grad) == (-20.0, 46.0)
        print("served by", type(y).__module__)
''')


def test_run_a_module(engine, tmp_path):
    """`run -m MODULE` is `python -m MODULE` with micrograd served by micrograd_fast: a test
    suite written for micrograd runs with `run -m pytest`; argv, sys.path[0] (the current
    directory), the exit status and a missing module are as python's."""
    (tmp_path / "test_engine.py").write_text(MICROGRAD_TESTS)
    result = _fast(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "test_engine.py"],
                   tmp_path, pure=engine.name == "py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"served by {engine.Value.__module__}" in result.stdout
    assert "1 passed" in result.stdout
    pytest.importorskip("micrograd.engine")  # (the probe runs under upstream micrograd too)
    (tmp_path / "probe.py").write_text(PROBE)
    ours, theirs = (_fast(["-m", "probe", "exit", "3"], tmp_path),
                    _python(["-m", "probe", "exit", "3"], tmp_path))
    assert ours.returncode == theirs.returncode == 3
    assert ours.stdout == theirs.stdout
    assert ours.stdout.startswith(f"__main__ ['{tmp_path / 'probe.py'}', 'exit', '3'] ")
    missing = _fast(["-m", "no_such_module"], tmp_path)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.endswith(": No module named no_such_module\n")


MP_SCRIPT = textwrap.dedent('''
    import multiprocessing as mp
    import sys
    from micrograd.engine import Value

    def work(x):
        v = Value(x) * 2 + 1
        v.backward()
        return type(v).__module__, v.data

    if __name__ == "__main__":
        for method in sys.argv[1:]:
            with mp.get_context(method).Pool(2) as pool:
                print(method, *pool.map(work, [1.0, 2.5]))
        print("main", Value.__module__)
''')


def test_run_serves_multiprocessing_workers(engine, tmp_path):
    """Workers started by spawn and forkserver import the script afresh (as __mp_main__): under
    `run` they get micrograd_fast too, not upstream micrograd (or an ImportError)."""
    import multiprocessing
    methods = [m for m in ("spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]
    (tmp_path / "mp_script.py").write_text(MP_SCRIPT)
    result = _fast(["mp_script.py", *methods], tmp_path, pure=engine.name == "py")
    assert result.returncode == 0, result.stderr
    module = engine.Value.__module__
    want = [f"{m} ('{module}', 3.0) ('{module}', 6.0)" for m in methods] + [f"main {module}"]
    assert result.stdout.splitlines() == want


# ---- the runner in-process ----

def _script(tmp_path, text, name="script.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_run_main_in_process(tmp_path, capsys):
    script = _script(tmp_path, '''
        import sys
        import micrograd
        import micrograd_fast
        from micrograd.engine import Value
        print(__name__, sys.argv[1:], sys.path[0], Value is micrograd_fast.Value)
        print(sys.modules["__main__"].__file__ == __file__)
    ''')
    argv, path0, main = sys.argv, sys.path[0], sys.modules["__main__"]
    before = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "micrograd"}
    assert run_main([script, "--lr", "0.1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"__main__ ['--lr', '0.1'] {tmp_path} True", "True"]
    # everything put back
    assert (sys.argv, sys.path[0], sys.modules["__main__"]) == (argv, path0, main)
    assert {k: v for k, v in sys.modules.items() if k.split(".")[0] == "micrograd"} == before


@pytest.mark.parametrize("code, status, message", [
    ("sys.exit(3)", 3, ""),
    ("sys.exit()", 0, ""),
    ("sys.exit(0)", 0, ""),
    ("sys.exit('bye')", 1, "bye\n"),
    ("raise SystemExit(7)", 7, ""),
])
def test_run_main_exit_codes(tmp_path, capsys, code, status, message):
    script = _script(tmp_path, f"import sys\n{code}\nprint('not reached')\n")
    assert run_main([script]) == status
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == message


def test_run_main_exception_traceback_starts_in_script(tmp_path, capsys):
    script = _script(tmp_path, '''
        def inner():
            return 1 / 0
        inner()
    ''')
    assert run_main([script]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[1] == f'  File "{script}", line 4, in <module>'
    assert f'  File "{script}", line 3, in inner' in err
    assert err[-1] == "ZeroDivisionError: division by zero"
    assert not any("dropin" in line for line in err)


def test_run_main_syntax_error(tmp_path, capsys):
    script = _script(tmp_path, "x = (1,\n")
    assert run_main([script]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f'File "{script}", line 1' in err and "SyntaxError" in err


def test_run_main_usage(capsys):
    assert run_main([]) == 2
    assert "usage: python -m micrograd_fast run SCRIPT" in capsys.readouterr().err
    assert run_main(["--help"]) == 0
    assert "usage: python -m micrograd_fast run SCRIPT" in capsys.readouterr().out


# ---- install_as_micrograd() ----

@pytest.fixture
def clean_install():
    yield
    uninstall_as_micrograd()


def _micrograd_entries():
    return {k: v for k, v in sys.modules.items() if k == "micrograd" or k.startswith("micrograd.")}


def test_install_serves_every_import_form(clean_install):
    package = install_as_micrograd()
    import micrograd
    import micrograd.engine
    import micrograd.nn as nn_alias
    from micrograd import nn
    from micrograd.engine import Value
    from micrograd.nn import MLP

    assert micrograd is package
    assert micrograd.engine is micrograd_fast.engine and micrograd.nn is micrograd_fast.nn
    assert nn is nn_alias is micrograd_fast.nn
    assert Value is micrograd_fast.Value and MLP is micrograd_fast.nn.MLP
    assert importlib.import_module("micrograd.engine") is micrograd_fast.engine
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("micrograd.nonexistent")
    # served modules keep their own identity
    assert micrograd_fast.engine.__spec__.name == "micrograd_fast.engine"
    assert install_as_micrograd() is package  # idempotent


def test_upstream_never_wins(clean_install):
    pytest.importorskip("micrograd.engine")
    upstream = sys.modules["micrograd.engine"]
    install_as_micrograd()
    # even with the entries removed (say, by a test harness), imports are served by us again
    for name in ("micrograd.engine", "micrograd.nn", "micrograd"):
        del sys.modules[name]
    engine_module = importlib.import_module("micrograd.engine")
    assert engine_module is micrograd_fast.engine and engine_module is not upstream
    from micrograd.nn import Neuron
    assert Neuron is micrograd_fast.nn.Neuron
    import micrograd
    assert micrograd.engine is micrograd_fast.engine


@pytest.mark.parametrize("upstream_imported", [True, False])
def test_uninstall_restores_previous_state(monkeypatch, clean_install, upstream_imported):
    if upstream_imported:
        pytest.importorskip("micrograd.nn")
    else:
        for name in list(_micrograd_entries()):
            monkeypatch.delitem(sys.modules, name)  # put back after the test
    before, meta_path = _micrograd_entries(), list(sys.meta_path)
    install_as_micrograd()
    import micrograd.engine  # noqa: F401
    assert _micrograd_entries() != before
    uninstall_as_micrograd()
    assert _micrograd_entries() == before
    assert sys.meta_path == meta_path
    uninstall_as_micrograd()  # a second time: nothing left to undo
    assert _micrograd_entries() == before
    if upstream_imported:
        from micrograd.engine import Value
        assert Value.__module__ == "micrograd.engine"


# ---- %load_ext micrograd_fast (IPython; the notebook test runs it in a real kernel) ----

def test_ipython_extension_load_twice_unload_restores(monkeypatch, clean_install):
    for name in list(_micrograd_entries()):
        monkeypatch.delitem(sys.modules, name)  # put back after the test
    before, meta_path = _micrograd_entries(), list(sys.meta_path)
    micrograd_fast.load_ipython_extension(None)  # IPython passes its shell; it is not needed
    package = sys.modules["micrograd"]
    micrograd_fast.load_ipython_extension(None)  # a second load changes nothing
    assert sys.modules["micrograd"] is package and sys.meta_path[1:] == meta_path
    from micrograd.engine import Value
    from micrograd.nn import MLP
    assert Value is micrograd_fast.engine.Value and MLP is micrograd_fast.nn.MLP
    micrograd_fast.unload_ipython_extension(None)
    assert _micrograd_entries() == before and sys.meta_path == meta_path


def test_nn_has_value_as_micrograds_does(clean_install):
    """micrograd's nn imports Value from its engine: `from micrograd.nn import MLP, Value`,
    nn.Value and `from micrograd.nn import *` (which brings its `random` along) work alike."""
    install_as_micrograd()
    from micrograd.engine import Value
    from micrograd.nn import MLP, Value as NnValue

    assert NnValue is Value and MLP(2, [1])([1.0, 2.0]).__class__ is Value
    names = {}
    exec("from micrograd.nn import *", names)
    assert set(names) - {"__builtins__"} == {"Value", "Module", "Neuron", "Layer", "MLP", "random"}
    uninstall_as_micrograd()
    try:
        upstream = importlib.import_module("micrograd.nn")
    except ImportError:
        return
    theirs = {}
    exec(f"from {upstream.__name__} import *", theirs)
    assert set(theirs) == set(names)
