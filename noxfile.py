"""The test suite on every supported CPython: `nox` (pip install nox, or the dev extra).

    nox                              # the tests session on each of PYTHONS found on this machine
    nox -s tests-3.13                # one interpreter
    nox -s tests-3.12 -- -m "not slow" tests/test_ops.py   # pytest arguments after --
    nox --force-python 3.14          # an interpreter not (yet) in PYTHONS

Each session makes a fresh virtualenv, installs the package from this checkout with the test
extra (`pip install ".[test]"`, which compiles the extension for that interpreter) and runs pytest
on the installed copy. Torch is never installed here (a bare `pip install torch` fetches a
multi-GB CUDA build): its comparisons skip. An interpreter that is not found is skipped.
"""
import os
import re
from pathlib import Path

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).resolve().parent

nox.options.sessions = ["tests"]
nox.options.download_python = "never"  # test the interpreters that are here, fetch none


def _add_pyenv_versions_to_path():
    """pyenv's shims run only the versions `pyenv global`/`pyenv local` select, so nox would not
    find the other installed ones: put each installed CPython's bin/ at the END of PATH (the
    newest patch release of each X.Y first), where nothing already on PATH changes meaning."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if not root.is_dir():
        return
    versions = [d for d in root.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", d.name)]
    versions.sort(key=lambda d: tuple(map(int, d.name.split("."))), reverse=True)
    extra = [str(d / "bin") for d in versions if (d / "bin").is_dir()]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [p for p in extra if p not in path])


_add_pyenv_versions_to_path()


@nox.session(python=PYTHONS)
def tests(session):
    # an in-place build for this interpreter (from `pip install -e .`) would shadow the fresh
    # install in the tests that run the checkout in a subprocess; it may be stale
    suffix = session.run("python", "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))",
                         silent=True).strip()
    in_place = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "micrograd_fast").glob("*" + suffix))
    if in_place:
        session.error(f"remove the in-place build {', '.join(in_place)} (from `pip install -e`): "
                      "it would shadow the fresh install")
    session.install(".[test]")
    session.run("python", "-c", "import sys, micrograd_fast as m; print(sys.version, m.BACKEND); "
                "sys.exit(m.BACKEND != 'cython')")
    # `pytest`, not `python -m pytest`: the checkout is then not on sys.path, so the tests import
    # the copy just installed
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs,
                env={"MICROGRAD_FAST_PURE_PYTHON": ""})
