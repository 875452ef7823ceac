#!/usr/bin/env python3
"""Build the motus_msgs interface package into the active virtual environment.

The Kilted wheels on PyPI ship the rosidl generators, but their CMake export files hard-code the
wheel build machine's Python and numpy include directories. We rewrite those paths to this
interpreter's, then configure, build and install motus_msgs into the venv prefix with plain CMake
so no environment variable is needed at run time.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy

REPO = Path(__file__).resolve().parent.parent
PREFIX = Path(sys.prefix)
WHEEL_PY_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
WHEEL_NUMPY_PREFIX = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def patch_wheel_cmake_files() -> int:
    """Point the wheels' CMake exports at this interpreter's include dirs; returns files changed."""
    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in (PREFIX / "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if WHEEL_PY_INCLUDE not in text and WHEEL_NUMPY_PREFIX not in text:
            continue
        text = text.replace(WHEEL_NUMPY_PREFIX, np_include).replace(WHEEL_PY_INCLUDE, py_include)
        path.write_text(text, errors="surrogateescape")
        changed += 1
    return changed


def build(build_dir: Path) -> None:
    """Configure, build and install motus_msgs into sys.prefix."""
    env = dict(os.environ)
    env["AMENT_PREFIX_PATH"] = str(PREFIX)
    env["CMAKE_PREFIX_PATH"] = str(PREFIX)
    env["PATH"] = f"{PREFIX / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    configure = [
        "cmake", "-S", str(REPO / "motus_msgs"), "-B", str(build_dir),
        f"-DCMAKE_INSTALL_PREFIX={PREFIX}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DBUILD_TESTING=OFF",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    jobs = str(max(1, os.cpu_count() or 1))
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j", jobs],
                ["cmake", "--install", str(build_dir)]):
        result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-6000:])
            raise SystemExit(f"build_msgs: command failed ({result.returncode}): {' '.join(cmd)}")


def main() -> int:
    changed = patch_wheel_cmake_files()
    print(f"build_msgs: patched {changed} wheel CMake files")
    build(REPO / "build" / "motus_msgs")
    print(f"build_msgs: installed motus_msgs into {PREFIX}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
