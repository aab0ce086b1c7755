"""The decorator half of no_grad() / enable_grad(), shared by both engines' grad-mode classes."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


def decorate(mode: Callable[[], Any], fn: _F) -> _F:
    """fn run with mode() entered around every call -- and, for a generator function, around
    every resumption of the generator (as torch's no_grad), so that code between its yields
    runs in the mode while the caller's code between them runs in the caller's."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            gen = fn(*args, **kwargs)
            try:
                with mode():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with mode():
                            gen.close()
                        raise
                    except BaseException as exc:  # noqa: B036 -- thrown in: passed on
                        with mode():
                            response = gen.throw(exc)
                    else:
                        with mode():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value
        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with mode():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
