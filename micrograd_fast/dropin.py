"""Serve `import micrograd` from micrograd_fast, and run unmodified micrograd scripts.

    import micrograd_fast
    micrograd_fast.install_as_micrograd()     # from here on, every form of
    from micrograd.engine import Value        # `import micrograd...` gets micrograd_fast
    from micrograd.nn import MLP

or, without touching the script at all:

    python -m micrograd_fast run train.py --its --own --args

`micrograd.engine` and `micrograd.nn` become the very module objects `micrograd_fast.engine` and
`micrograd_fast.nn`; `micrograd` itself is a small package module holding them as `.engine` and
`.nn`. An installed upstream micrograd never wins while this is in place: the modules sit in
`sys.modules` (which the import system consults first) and a finder at the head of
`sys.meta_path` serves them again if someone deletes those entries. `uninstall_as_micrograd()`
puts back exactly what was there before (including an already imported upstream micrograd).
"""
from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import importlib.util
import os
import runpy
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any, Optional

__all__ = ["install_as_micrograd", "uninstall_as_micrograd", "run_main"]

_NAME = "micrograd"


def _is_ours(name: str) -> bool:
    """micrograd itself or any micrograd.<submodule>."""
    return name == _NAME or name.startswith(_NAME + ".")


def _served() -> dict[str, types.ModuleType]:
    """{module name: module object} that `import micrograd...` should get."""
    from . import engine, nn

    package = types.ModuleType(_NAME, "micrograd, served by micrograd_fast (micrograd_fast.dropin).")
    package.__package__ = _NAME
    package.__path__ = []  # a package with no directory: micrograd.<anything else> is not found
    package.__file__ = sys.modules[__package__].__file__  # (micrograd_fast's __init__.py)
    setattr(package, "engine", engine)
    setattr(package, "nn", nn)
    return {_NAME: package, _NAME + ".engine": engine, _NAME + ".nn": nn}


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Meta path finder (and loader) for the served names, ahead of the path-based finder.

    The import system only asks finders for modules missing from sys.modules, so this matters
    only when someone removes the entries; it keeps the upstream package from sneaking in then.
    """

    def __init__(self, modules: dict[str, types.ModuleType]) -> None:
        self.modules = modules
        package = modules[_NAME]
        package.__spec__ = importlib.machinery.ModuleSpec(_NAME, self, is_package=True)
        package.__loader__ = self

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None,
        target: Optional[types.ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self.modules:
            return None  # micrograd.<other>: the empty __path__ above makes it ModuleNotFoundError
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == _NAME)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a throwaway module; exec_module swaps in the served one

    def exec_module(self, module: types.ModuleType) -> None:
        # the import system returns whatever sys.modules holds under the name after exec_module,
        # so the served module object (micrograd_fast.engine itself, say) is what the importer
        # gets -- without rewriting its __spec__ or __loader__, as create_module would
        name = module.__name__
        sys.modules[name] = self.modules[name]


class _Installed:
    """What install_as_micrograd() changed, so that uninstall can put it back."""

    def __init__(self, finder: _Finder, saved: dict[str, types.ModuleType], missing: set[str]) -> None:
        self.finder = finder  # ours, at the head of sys.meta_path
        self.saved = saved  # micrograd entries of sys.modules before install (upstream's)
        self.missing = missing  # served names that were not in sys.modules before


_state: Optional[_Installed] = None  # set while installed


def install_as_micrograd() -> types.ModuleType:
    """Make `import micrograd`, `micrograd.engine` and `micrograd.nn` (any import form) give
    micrograd_fast. Returns the served `micrograd` package module. Calling it again is a no-op."""
    global _state
    if _state is not None:
        return _state.finder.modules[_NAME]
    modules = _served()
    # every micrograd entry (upstream's too, if it was imported) is saved and hidden, so that
    # nothing of the upstream package is reachable while ours is installed
    saved = {name: mod for name, mod in sys.modules.items() if _is_ours(name)}
    for name in saved:
        del sys.modules[name]
    finder = _Finder(modules)
    sys.meta_path.insert(0, finder)
    sys.modules.update(modules)
    _state = _Installed(finder, saved, set(modules) - set(saved))
    return modules[_NAME]


def uninstall_as_micrograd() -> None:
    """Undo install_as_micrograd(): sys.modules and sys.meta_path as they were before it."""
    global _state
    if _state is None:
        return
    state, _state = _state, None
    try:
        sys.meta_path.remove(state.finder)
    except ValueError:  # someone already took it out
        pass
    # drop every micrograd entry made while installed (also micrograd.<x> a script added), then
    # restore the saved ones
    for name in [n for n in sys.modules if _is_ours(n)]:
        del sys.modules[name]
    sys.modules.update(state.saved)


# ---- python -m micrograd_fast run SCRIPT [args...] ----

RUN_USAGE = """usage: python -m micrograd_fast run SCRIPT [args...]
       python -m micrograd_fast run -m MODULE [args...]

Run SCRIPT as `python SCRIPT args...` would (or MODULE as `python -m MODULE args...`: a test
suite written for micrograd with `run -m pytest`), with `import micrograd` (micrograd.engine,
micrograd.nn, any import form) served by micrograd_fast. sys.argv, __name__ == "__main__",
sys.path[0], exit codes and tracebacks are those of a direct run; multiprocessing workers
the script starts are served by micrograd_fast too.
"""


def _compile_script(path: str) -> types.CodeType:
    with open(path, "rb") as f:
        source = f.read()  # bytes: compile() honours a PEP 263 coding line, as python does
    return compile(source, path, "exec", dont_inherit=True)


def _exit_code(exc: SystemExit) -> int:
    """The process exit status Python gives for an uncaught SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)  # sys.exit(True) is status 1
    print(code, file=sys.stderr)  # sys.exit("message"): the message goes to stderr, status 1
    return 1


def _script_traceback(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """tb without this module's own frames at its head, so the printed traceback starts in the
    script -- as it would have, had the script been run directly."""
    here = _compile_script.__code__.co_filename
    while tb is not None and tb.tb_frame.f_code.co_filename == here:
        tb = tb.tb_next
    return tb


# ---- child interpreters of a `run` script ----
#
# multiprocessing's spawn and forkserver start methods (the default on macOS and Windows, and
# forkserver on Linux from Python 3.14) start fresh interpreters that import the script again as
# __mp_main__: they would get upstream micrograd. While `run` is active, the `-c` program of
# every interpreter multiprocessing starts is prefixed with a prelude that installs ours first.

def _child_prelude() -> str:
    """Python code a child interpreter runs first: install_as_micrograd(), with micrograd_fast
    found where this process found it (multiprocessing sets the child's sys.path only later)."""
    home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return (
        "import sys as _mgf_sys\n"
        f"_mgf_sys.path.insert(0, {home!r})\n"
        "try:\n"
        "    import micrograd_fast.dropin as _mgf_dropin\n"
        "    _mgf_dropin.install_as_micrograd()\n"
        "    del _mgf_dropin\n"
        "except ImportError:\n"
        "    pass\n"
        "finally:\n"
        f"    _mgf_sys.path.remove({home!r})\n"
        "    del _mgf_sys\n"
    )


def _with_prelude(args: list[Any]) -> list[Any]:
    """A child's command line with the prelude before its `-c` program (others unchanged)."""
    args = list(args)
    if "-c" in args:
        k = args.index("-c") + 1
        if k < len(args):
            args[k] = _child_prelude() + args[k]
    return args


class _ChildrenServed:
    """While active, interpreters started by multiprocessing (spawned workers, the forkserver,
    its resource tracker) install micrograd_fast as micrograd before anything else."""

    def __enter__(self) -> None:
        from multiprocessing import spawn as spawn_module, util as util_module

        # (Any: typeshed's multiprocessing does not declare these two on every Python version)
        spawn: Any = spawn_module
        util: Any = util_module
        self.spawn, self.util = spawn, util
        self.get_command_line, self.spawnv_passfds = spawn.get_command_line, util.spawnv_passfds
        get_command_line, spawnv_passfds = self.get_command_line, self.spawnv_passfds

        def command_line(**kwds: object) -> list[str]:
            return _with_prelude(get_command_line(**kwds))

        def spawnv(path: Any, args: Sequence[Any], passfds: Sequence[int]) -> int:
            return int(spawnv_passfds(path, _with_prelude(list(args)), passfds))  # (a pid)

        spawn.get_command_line = command_line
        util.spawnv_passfds = spawnv

    def __exit__(self, *exc: object) -> None:
        self.spawn.get_command_line = self.get_command_line
        self.util.spawnv_passfds = self.spawnv_passfds


def run_main(argv: Sequence[str], restore: bool = True) -> int:
    """`python -m micrograd_fast run SCRIPT [args...]` (or `run -m MODULE [args...]`); returns
    the process exit status.

    With restore (in-process use), sys.argv, sys.path[0], __main__ and the micrograd modules
    are put back when the script's code ends. The command line passes restore=False: the
    process ends with the script, and what still runs then -- atexit handlers, threads the
    script left running -- must see what the script saw (pickling a class of __main__ at exit,
    importing micrograd late), as with `python script.py`."""
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(RUN_USAGE, end="", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(RUN_USAGE, end="")
        return 0
    if argv[0] == "-m":  # as `python -m MODULE`: sys.path[0] is the current directory
        if len(argv) < 2:
            print("python -m micrograd_fast run: -m needs a module name\n\n" + RUN_USAGE, end="",
                  file=sys.stderr)
            return 2
        return _serve(lambda: _run_module(argv[1]), ["-m", *argv[2:]], os.getcwd(), None,
                      restore)

    script = argv[0]
    path = os.path.abspath(script)  # python >= 3.9 gives __main__ an absolute __file__
    try:
        code = _compile_script(path)
    except OSError as exc:  # what python says for a missing script, and its status 2
        print(f"python -m micrograd_fast run: can't open file {script!r}: "
              f"[Errno {exc.errno}] {exc.strerror}", file=sys.stderr)
        return 2
    except SyntaxError as exc:
        exc.__traceback__ = None  # python prints just the error and its place, no traceback
        sys.excepthook(type(exc), exc, None)
        return 1

    # the script's __main__ module, with the globals python gives a script run directly
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path,
        __cached__=None,
        __package__=None,
        __spec__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
        __builtins__=builtins,
    )
    if sys.version_info < (3, 14):  # (python's __main__ has an empty one up to 3.13)
        main.__dict__["__annotations__"] = {}
    return _serve(lambda: exec(code, main.__dict__), [script, *argv[1:]], os.path.dirname(path),
                  main, restore)


def _serve(run: Callable[[], Any], argv: list[str], path0: str, main: Optional[types.ModuleType],
           restore: bool) -> int:
    """run() with micrograd served by micrograd_fast, sys.argv and sys.path[0] set (and
    sys.modules["__main__"], for a script); returns the exit status python would give."""
    saved_argv, saved_path0, saved_main = sys.argv, sys.path[:1], sys.modules.get("__main__")
    sys.argv = argv
    sys.path[:1] = [path0]  # the script's directory (or, for -m, the current one), not ours
    if main is not None:
        sys.modules["__main__"] = main  # so pickle and `import __main__` see the script
    was_installed = _state is not None
    install_as_micrograd()
    children = _ChildrenServed()
    children.__enter__()
    try:
        run()
    except SystemExit as exc:
        return _exit_code(exc)
    except _NoModule as exc:
        print(f"python -m micrograd_fast run: {exc}", file=sys.stderr)  # (python: status 1)
        return 1
    except BaseException as exc:  # noqa: B036 -- KeyboardInterrupt is reported the same way
        return _uncaught(exc)
    finally:
        if restore:
            children.__exit__()
            if not was_installed:
                uninstall_as_micrograd()
            sys.argv, sys.path[:1] = saved_argv, saved_path0
            if saved_main is None:
                sys.modules.pop("__main__", None)
            else:
                sys.modules["__main__"] = saved_main
    return 0


class _NoModule(Exception):
    """`run -m MODULE` for a module that is not there."""


def _run_module(name: str) -> None:
    try:
        spec = importlib.util.find_spec(name)  # (imports its parent packages, as python -m)
    except (ImportError, ValueError) as exc:
        raise _NoModule(f"Error while finding module specification for {name!r} ({exc})") \
            from None
    if spec is None:
        raise _NoModule(f"No module named {name}")
    runpy.run_module(name, run_name="__main__", alter_sys=True)


def _uncaught(exc: BaseException) -> int:
    # sys.excepthook is what python calls for an uncaught exception (a script may set its own);
    # the default hook prints the exception's own __traceback__, so trim that one
    tb = exc.__traceback__ = _script_traceback(exc.__traceback__)
    sys.excepthook(type(exc), exc, tb)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1
