"""`%load_ext micrograd_fast` in a real Jupyter kernel: tests/notebooks/lecture.ipynb -- a notebook
written for micrograd (the lecture's neuron, draw_dot, an MLP on two moons, cells that raise) --
runs in an IPython kernel (nbclient + ipykernel) on this interpreter, and its outputs are checked:

* after `%load_ext`, `micrograd.engine.Value is micrograd_fast.engine.Value` in the kernel;
* the printed numbers equal those computed here, in-process, with micrograd_fast (exactly);
* draw_dot's output is an SVG picture (when the Graphviz `dot` program is installed);
* an error cell reports the exception (type and message) that the same code gets as a script;
* `%unload_ext` restores sys.modules: `import micrograd` then gives upstream micrograd.

The notebook runs once per module, in a fresh temporary directory; the kernel imports the same
micrograd_fast as this process (its directory goes first on the kernel's PYTHONPATH).
"""
import importlib.util
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import micrograd_fast
import micrograd_fast.engine
import micrograd_fast.nn
from micrograd_fast.demo import make_moons, svm_loss

NOTEBOOK = Path(__file__).resolve().parent / "notebooks" / "lecture.ipynb"
ERROR_CELLS = {"error-type": "TypeError", "error-log": "ValueError", "error-exp": "OverflowError"}
_NEEDS = 'needs the notebook tools: pip install "micrograd_fast[notebook]"'


def _has(module):
    return importlib.util.find_spec(module) is not None


HAS_GRAPHVIZ = _has("graphviz")
HAS_DOT = shutil.which("dot") is not None  # Jupyter's picture of a graphviz graph needs `dot`
HAS_UPSTREAM = _has("micrograd") and importlib.util.find_spec("micrograd").origin is not None


def _package_parent():
    """The directory this process imports micrograd_fast from (the checkout, or site-packages)."""
    return str(Path(micrograd_fast.__file__).resolve().parent.parent)


def _kernel_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_parent(), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook run in an ipykernel of this interpreter: {cell id: cell with outputs}.

    Cells whose optional needs are missing are left out (their tests skip): the draw_dot cell
    without the graphviz package or the `dot` program (displaying the graph runs `dot`, and
    raises without it), the upstream cell without upstream micrograd."""
    for module in ("nbformat", "nbclient", "ipykernel", "jupyter_client"):
        if not _has(module):
            pytest.skip(f"{_NEEDS} ({module} is not installed)")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    left_out = {"graph"} if not (HAS_GRAPHVIZ and HAS_DOT) else set()
    left_out |= {"upstream"} if not HAS_UPSTREAM else set()
    nb.cells = [cell for cell in nb.cells if cell.get("id") not in left_out]
    assert all(not cell.get("outputs") for cell in nb.cells), "commit the notebook without outputs"

    # a kernel spec naming this interpreter, found first (JUPYTER_PATH leads the search), so that
    # no other `python3` kernel on the machine (a user's, another environment's) is the one run
    tmp = tmp_path_factory.mktemp("notebook")
    spec_dir = tmp / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (this interpreter)",
        "language": "python",
    }))
    work = tmp / "work"  # the kernel's cwd: nothing importable there
    work.mkdir()
    started = []  # set once the kernel answers: failures before that mean no kernel can start here
    client = NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60,
                            allow_errors=False,  # only cells tagged raises-exception may fail
                            resources={"metadata": {"path": str(work)}},
                            on_notebook_start=lambda notebook: started.append(True))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", os.pathsep.join(
            filter(None, [str(spec_dir.parent.parent), os.environ.get("JUPYTER_PATH")])))
        try:
            client.execute(env=_kernel_env())
        except Exception as exc:
            if started:
                raise
            pytest.skip(f"no Jupyter kernel could start on this interpreter: {exc!r}")
    return {cell["id"]: cell for cell in nb.cells}


def _stdout(cell):
    return "".join(o["text"] for o in cell["outputs"]
                   if o["output_type"] == "stream" and o["name"] == "stdout")


def _error(cell):
    (error,) = [o for o in cell["outputs"] if o["output_type"] == "error"]
    return error


def test_notebook_is_committed_without_outputs():
    # plain JSON: runs without the notebook tools too
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    assert cells[0]["source"] in ("%load_ext micrograd_fast", ["%load_ext micrograd_fast"])
    for cell in cells:
        assert cell.get("outputs", []) == [] and cell.get("execution_count") is None, cell["id"]


def test_load_ext_serves_micrograd(executed):
    assert executed["load-ext"]["outputs"] == []
    served, path = _stdout(executed["served"]).splitlines()
    # micrograd.engine.Value is micrograd_fast.engine.Value, nn is micrograd_fast.nn, in the kernel
    assert served == "True True True"
    assert Path(path).resolve() == Path(micrograd_fast.__file__).resolve()


def _lecture_neuron(Value):
    x1 = Value(2.0, label='x1')
    x2 = Value(0.0, label='x2')
    w1 = Value(-3.0, label='w1')
    w2 = Value(1.0, label='w2')
    b = Value(6.8813735870195432, label='b')
    o = (x1 * w1 + x2 * w2 + b).tanh()
    o.backward()
    return o, x1, w1, x2, w2


def test_neuron_numbers(executed):
    printed = [line.split() for line in _stdout(executed["grads"]).splitlines()]
    assert [name for name, _ in printed] == ["o", "x1", "w1", "x2", "w2"]
    values = [float(number) for _, number in printed]
    o, x1, w1, x2, w2 = _lecture_neuron(micrograd_fast.engine.Value)
    assert values == [o.data, x1.grad, w1.grad, x2.grad, w2.grad]  # exactly
    # the lecture's numbers
    assert math.isclose(values[0], 0.7071067811865476, rel_tol=1e-15)
    assert [round(v, 12) for v in values[1:]] == [-1.5, 1.0, 0.5, 0.0]


@pytest.mark.skipif(not HAS_GRAPHVIZ, reason='draw_dot needs the graphviz package: pip install "micrograd_fast[viz]"')
@pytest.mark.skipif(not HAS_DOT,
                    reason="the Graphviz `dot` program is not installed: no picture to check "
                           "(apt install graphviz)")
def test_draw_dot_shows_svg(executed):
    (result,) = [o for o in executed["graph"]["outputs"] if o["output_type"] == "execute_result"]
    svg = result["data"]["image/svg+xml"]
    assert "<svg" in svg
    # the neuron's five leaves, its three intermediate nodes and o, and their numbers
    assert svg.count('class="node"') == 10 + 5  # 10 Value records, 5 op nodes (* * + + tanh)
    for text in (">x1<", ">w2<", ">o<", ">tanh<", "data 0.7071", "grad &#45;1.5000", "data 6.8814"):
        assert text in svg, text


def test_training_losses(executed):
    model_out = _stdout(executed["model"]).splitlines()
    assert model_out[-1] == "number of parameters 337"
    lines = _stdout(executed["train"]).splitlines()
    printed = [re.fullmatch(r"step (\d+) loss (\S+), accuracy (\S+)%", line) for line in lines]
    assert all(printed), lines
    # the same run here, on micrograd_fast, from the same seed (and the test's random state kept)
    state = random.getstate()
    try:
        random.seed(1337)
        X, y = make_moons(n_samples=100, noise=0.1)
        model = micrograd_fast.nn.MLP(2, [16, 16, 1])
        expected = []
        for k in range(10):
            total_loss, acc = svm_loss(model, X, y, micrograd_fast.engine.Value)
            model.zero_grad()
            total_loss.backward()
            learning_rate = 1.0 - 0.9 * k / 100
            for p in model.parameters():
                p.data -= learning_rate * p.grad
            expected.append((k, total_loss.data, acc * 100))
    finally:
        random.setstate(state)
    assert [(int(m[1]), float(m[2]), float(m[3])) for m in printed] == expected
    assert expected[-1][1] < expected[0][1]  # it learns


def _as_script(source, tmp_path):
    """The exception line (`Type: message`) the code gets as a script, run as micrograd scripts are
    run on micrograd_fast (`python -m micrograd_fast run`)."""
    script = tmp_path / "cell.py"
    script.write_text(source + "\n")
    proc = subprocess.run([sys.executable, "-m", "micrograd_fast", "run", str(script)],
                          cwd=tmp_path, env=_kernel_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("cell_id", ERROR_CELLS)
def test_error_cell_matches_script(executed, cell_id, tmp_path):
    cell = executed[cell_id]
    error = _error(cell)
    assert error["ename"] == ERROR_CELLS[cell_id]
    assert f"{error['ename']}: {error['evalue']}" == _as_script(cell["source"], tmp_path)


def test_unload_ext_restores_upstream(executed):
    # right after %unload_ext no micrograd module is left (none was there before %load_ext)
    assert _stdout(executed["unload"]) == "[]\n"
    if not HAS_UPSTREAM:
        pytest.skip("upstream micrograd is not installed (pip install micrograd==0.1.0)")
    is_ours, path = _stdout(executed["upstream"]).splitlines()
    assert is_ours == "False"
    assert Path(path).resolve() == Path(importlib.util.find_spec("micrograd.engine").origin).resolve()
