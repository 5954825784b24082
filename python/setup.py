"""Builds libattention from the Swift package one directory up (`make -C <repo> python-lib`,
which runs `make lib`) and ships it inside the `attention` package, so `pip wheel ./python`,
`python -m build --wheel ./python` or `pip install ./python` give a self-contained install.

The package is ctypes only: the wheel is tagged py3-none-manylinux_<glibc>_<arch>, the glibc
being the newest GLIBC_ symbol version the shipped libraries need. By default it carries the
runtime-dispatched library (the loader and its avx512, avx2 and baseline kernel variants): it
runs on any x86-64. ATTENTION_TARGET_CPU set to an LLVM CPU name (native, haswell, x86-64, ...)
ships one library built for that CPU instead: that wheel runs only on CPUs of that class,
which its tag cannot say. SWIFT names the swift executable (default: swift on PATH).

There is no sdist: the Swift package is the parent of this directory, which an sdist of
python/ cannot carry; build wheels from a checkout.
"""

import os
import platform
import re
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "attention"


class BuildWithMake(build_py):
    """build_py, plus the library, its header and pkg-config file in the built package."""

    def run(self):
        super().run()
        if not (ROOT / "Package.swift").is_file():
            raise RuntimeError(f"the Swift package is not at {ROOT}: build from a checkout of libattention")
        cpu = os.environ.get("ATTENTION_TARGET_CPU") or "dispatch"
        target = Path(self.build_lib).resolve() / PACKAGE
        subprocess.run(["make", "-C", str(ROOT), "python-lib", f"TARGET_CPU={cpu}", f"PYPKG={target}"], check=True)


class ManylinuxWheel(bdist_wheel):
    """Tagged py3-none (no Python extension module) and manylinux_X_Y_<arch>, X.Y the newest
    glibc symbol version the package's libraries require (`objdump -p`)."""

    def get_tag(self):
        built = Path(self.get_finalized_command("build_py").build_lib) / PACKAGE
        needed = set()
        for library in built.glob("libattention*.so*"):
            dump = subprocess.run(["objdump", "-p", str(library)], check=True, capture_output=True, text=True)
            needed |= {(int(major), int(minor)) for major, minor in re.findall(r"\bGLIBC_(\d+)\.(\d+)", dump.stdout)}
        if not needed:
            raise RuntimeError(f"no libattention*.so with glibc symbol versions in {built}")
        major, minor = max(needed)
        return "py3", "none", f"manylinux_{major}_{minor}_{platform.machine()}"


class NoSdist(sdist):
    """Refuses: the package's library is built from files outside python/."""

    def run(self):
        raise SystemExit(
            "error: libattention has no sdist: its library is built from the Swift package in the "
            "parent directory of python/, which an sdist of python/ cannot carry. Build a wheel from "
            "a checkout instead (pip wheel ./python, or python -m build --wheel ./python; needs "
            "Swift 6, make and a C compiler) and install that."
        )


class BinaryDistribution(Distribution):
    """The package carries compiled libraries: the wheel is platform-specific."""

    def has_ext_modules(self):
        return True


setup(
    cmdclass={"build_py": BuildWithMake, "bdist_wheel": ManylinuxWheel, "sdist": NoSdist},
    distclass=BinaryDistribution,
)
