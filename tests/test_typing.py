"""The typed API: micrograd_fast/_engine.pyi + py.typed, checked with mypy --strict.

* tests/typing_sample.py -- a user's script -- passes `mypy --strict` (and runs);
* the stubs are not vacuous: misuse is reported and reveal_type shows the precise types;
* the stubs match the compiled module (mypy's stubtest: every name, method and signature);
* the package's own modules pass `mypy --strict` (the [tool.mypy] config in pyproject.toml).

The mypy tests skip when mypy is not installed (`pip install "micrograd_fast[typing]"`).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "typing_sample.py"


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Runs `python -m mypy ARGS` in the checkout (so the checkout's stubs are the ones read),
    with a cache shared by this module's runs; returns (exit status, output)."""
    pytest.importorskip("mypy", reason="needs mypy: pip install 'micrograd_fast[typing]'")
    cache = tmp_path_factory.mktemp("mypy_cache")

    def run(*args, module="mypy"):
        env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
        env.pop("MICROGRAD_FAST_PURE_PYTHON", None)
        cache_args = ["--cache-dir", str(cache)] if module == "mypy" else []
        proc = subprocess.run([sys.executable, "-m", module, *args, *cache_args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        return proc.returncode, proc.stdout + proc.stderr

    return run


def test_sample_runs():
    """The sample is a working program, not only well-typed: its numbers are micrograd's."""
    spec = importlib.util.spec_from_file_location("typing_sample", SAMPLE)
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    g, da, db = sample.readme_example()
    assert (f"{g:.4f}", f"{da:.4f}", f"{db:.4f}") == ("24.7041", "138.8338", "645.5773")
    assert sample.lecture_node() == 6.0  # d(a**2)/da at a = 3
    history = sample.train(steps=4)
    assert len(history) == 4 and history[-1] < history[0]
    assert sample.count_parameters(sample.MLP(2, [16, 16, 1])) == 337  # micrograd's demo model
    assert sample.check_gradients() is True
    try:
        import graphviz  # noqa: F401
    except ImportError:  # draw_dot needs it (the viz extra)
        return
    source = sample.picture()
    assert "digraph" in source and "tanh" in source and "grad 1.0000" in source


def test_sample_passes_mypy_strict(mypy):
    # --follow-imports=silent: as for an installed package, only the script's own errors count
    # (the package's modules are checked on their own below)
    status, output = mypy("--strict", "--follow-imports=silent", str(SAMPLE))
    assert status == 0, output
    assert "Success: no issues found in 1 source file" in output


# each line marked `# E: <regex>` must give a mypy error matching it; `reveal_type` lines are
# checked against REVEALED, in order
MISUSE = '''
from micrograd_fast import Value, dot, sum_values
from micrograd_fast._engine import arena_stats
from micrograd_fast.nn import MLP

v = Value(1.0)
Value("x")  # E: Argument 1 to "Value" has incompatible type "str"
v + "a"  # E: Unsupported operand types for \\+ \\("Value" and "str"\\)
"a" * v  # E: Unsupported operand types for \\* \\("str" and "Value"\\)
v.data = "s"  # E: Incompatible types in assignment
v.relu().nope  # E: "Value" has no attribute "nope"
n: int = v.grad  # E: Incompatible types in assignment \\(expression has type "float"
v.backward(1)  # E: Too many arguments for "backward"
v._backward = 3  # E: Incompatible types in assignment
dot([v], [2.0], bias=None)  # E: Argument "bias" to "dot" has incompatible type "None"
arena_stats()["nodes"]  # E: TypedDict "_ArenaStats" has no key "nodes"
MLP(2, 16)  # E: Argument 2 to "MLP" has incompatible type "int"
reveal_type(v + 1)
reveal_type(2 ** v)
reveal_type(1.5 / v)
reveal_type(-v)
reveal_type(v.data)
reveal_type(v._prev)
reveal_type(sum_values([v, 2.0]))
reveal_type(MLP(2, [1]).parameters())
reveal_type(arena_stats()["live"])
'''
REVEALED = [
    "micrograd_fast._engine.Value",
    "micrograd_fast._engine.Value",
    "micrograd_fast._engine.Value",
    "micrograd_fast._engine.Value",
    "float",
    "set[micrograd_fast._engine.Value]",
    "micrograd_fast._engine.Value",
    "list[micrograd_fast._engine.Value]",
    "int",
]


def test_stubs_report_misuse_and_precise_types(mypy, tmp_path):
    script = tmp_path / "misuse.py"
    script.write_text(MISUSE)
    status, output = mypy("--strict", "--follow-imports=silent", "--no-error-summary",
                          "--hide-error-context", str(script))
    assert status == 1, output
    errors, revealed = {}, []
    for line in output.splitlines():
        m = re.match(r".*misuse\.py:(\d+): (error|note): (.*)", line)
        if not m:
            continue
        number, kind, message = int(m.group(1)), m.group(2), m.group(3)
        if kind == "note" and message.startswith("Revealed type is "):
            # older mypy versions spell builtins out ("builtins.float"), newer ones do not
            revealed.append(message[len("Revealed type is "):].strip('"').replace("builtins.", ""))
        elif kind == "error":
            errors.setdefault(number, []).append(message)
    expected = {}
    for number, line in enumerate(MISUSE.splitlines(), start=1):
        if "# E: " in line:
            expected[number] = line.split("# E: ", 1)[1]
    for number, pattern in expected.items():
        got = errors.get(number, [])
        assert any(re.search(pattern, message) for message in got), (
            f"line {number} ({MISUSE.splitlines()[number - 1]!r}): expected /{pattern}/, got {got}")
    unexpected = {n: msgs for n, msgs in errors.items() if n not in expected}
    assert not unexpected, f"unexpected errors: {unexpected}\n{output}"
    assert revealed == REVEALED, output


def test_stubs_match_compiled_module(mypy, c_engine, tmp_path):
    """mypy's stubtest imports the compiled module and compares it with _engine.pyi: a method or
    function added, removed or re-signed in the .pyx without the stub fails here."""
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(
        # Cython adds __test__ (doctest table) to every module
        "micrograd_fast._engine.__test__\n"
        # Value has a C layout, so it is a 'disjoint base' (PEP 800); the stubs leave that
        # unmarked so that mypy versions without @disjoint_base can read them
        "micrograd_fast._engine.Value\n"
    )
    status, output = mypy("--mypy-config-file", str(ROOT / "pyproject.toml"),
                          "--allowlist", str(allowlist), "--ignore-unused-allowlist",
                          "micrograd_fast._engine", module="mypy.stubtest")
    assert status == 0, output


def test_package_passes_mypy_strict(mypy):
    """`python -m mypy` in the checkout: [tool.mypy] checks the package and the sample, strictly."""
    status, output = mypy()
    assert status == 0, output
    assert re.search(r"Success: no issues found in \d+ source files", output), output
