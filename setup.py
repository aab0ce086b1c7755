"""Builds the compiled engine.

One rule: every src/micrograd_fast/<name>.pyx becomes the extension module micrograd_fast.<name>
(src/ keeps the Cython sources out of the installed package; the .pxi/.pxd beside them are
compile-time only).
"""
import os
import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

SRC = Path("src") / "micrograd_fast"

if sys.platform == "win32":
    extra_compile_args = ["/O2", "/fp:precise"]
else:
    # -ffp-contract=off: no fused multiply-add, so `acc + w * x` rounds exactly as Python's
    # floats do (aarch64 and -march=native would otherwise contract it and change the last bit)
    extra_compile_args = ["-O3", "-ffp-contract=off", "-fno-strict-aliasing"]
if os.environ.get("MICROGRAD_FAST_DEBUG_BUILD"):  # sanitizer / valgrind builds
    extra_compile_args = ["-O1", "-g", "-fno-omit-frame-pointer", "-ffp-contract=off"]

extensions = [
    Extension(
        f"micrograd_fast.{pyx.stem}",
        [str(pyx)],
        extra_compile_args=extra_compile_args,
        # the classic tp_new(type, args, kwargs) for our types: Cython's vectorcall variant
        # unpacks keyword arguments into a buffer whose error path (out of memory) releases
        # slots it never filled (Cython 3.3); Value's own calls take _value_vectorcall anyway
        define_macros=[("CYTHON_VECTORCALL_TPNEW", "0")],
    )
    for pyx in sorted(SRC.glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": "3", "embedsignature": True,
                             "embedsignature.format": "clinic"},
    ),
)
