"""Builds libattention.so from the Swift package one directory up and ships it inside the
`attention` package, so `pip install ./python` (or `pip wheel ./python`, or
`python -m build --wheel ./python`) gives a self-contained, platform-specific install.

ATTENTION_TARGET_CPU selects the CPU the kernels are compiled for (default: native, this
machine; e.g. haswell for any AVX2 + FMA machine, x86-64 for any x86-64). SWIFT names the
swift executable (default: swift on PATH).
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = "libattention.so"


class BuildWithSwift(build_py):
    """build_py, plus `swift build -c release --product attention` and a copy of the
    library into the built package."""

    def run(self):
        super().run()
        if not (ROOT / "Package.swift").is_file():
            raise RuntimeError(f"the Swift package is not at {ROOT}: build from a checkout of libattention")
        cpu = os.environ.get("ATTENTION_TARGET_CPU", "native")
        scratch = ROOT / (".build" if cpu == "native" else f".build-cpu-{cpu}")
        command = [os.environ.get("SWIFT", "swift"), "build", "-c", "release", "--product", "attention",
                   "--package-path", str(ROOT), "--scratch-path", str(scratch)]
        subprocess.run(command, check=True, env={**os.environ, "ATTENTION_TARGET_CPU": cpu})
        target = Path(self.build_lib) / "attention"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(scratch / "release" / LIBRARY, target / LIBRARY)


class BinaryDistribution(Distribution):
    """The package carries a compiled library: the wheel is platform-specific."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithSwift}, distclass=BinaryDistribution)
