#!/usr/bin/env bash
# Idempotent set-up of the development environment (used by `make setup`, `make demo`, `make test`).
#   1. Debian packages the wheels need at run time (apt-get when root, else print the command)
#   2. .venv with pinned Python packages (requirements.txt; torch 2.13.0 CPU, ROS 2 Kilted wheels)
#   3. motus_msgs built into the venv (scripts/build_msgs.py)
#   4. motus_ros installed editable (console scripts for every node and `motus-ros`)
# Each step is keyed on a hash of its inputs, so a second run with nothing changed takes ~1 s.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
PIP_VERSION=26.3
SETUPTOOLS_VERSION=80.9.0
WHEEL_VERSION=0.45.1
# libosmesa6: MuJoCo CPU rendering (MUJOCO_GL=osmesa); libusb-1.0-0: pyrealsense2 import;
# cmake/g++: building motus_msgs; libgl1/libegl1: mujoco's GL loader.
DEBIAN_PACKAGES=(libosmesa6 libusb-1.0-0 libgl1 libegl1 cmake g++ make)

say() { printf '[setup] %s\n' "$*"; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        say "missing Debian packages; run: sudo apt-get install -y ${missing[*]}"
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi

req_hash=$(hash_of requirements.txt scripts/setup.sh)
if [ "$(cat "$VENV/.motus_requirements" 2>/dev/null)" != "$req_hash" ]; then
    say "installing pinned Python packages (first run: a few minutes)"
    "$VENV/bin/python" -m pip install -q "pip==$PIP_VERSION" "setuptools==$SETUPTOOLS_VERSION" "wheel==$WHEEL_VERSION"
    "$VENV/bin/python" -m pip install -q -r requirements.txt
    echo "$req_hash" > "$VENV/.motus_requirements"
    rm -f "$VENV/.motus_msgs"
fi

msgs_hash=$(hash_of motus_msgs/CMakeLists.txt motus_msgs/package.xml motus_msgs/msg/*.msg motus_msgs/srv/*.srv scripts/build_msgs.py)
if [ "$(cat "$VENV/.motus_msgs" 2>/dev/null)" != "$msgs_hash" ]; then
    say "building motus_msgs into $VENV"
    "$VENV/bin/python" scripts/build_msgs.py
    echo "$msgs_hash" > "$VENV/.motus_msgs"
fi

# Console scripts are generated from motus_ros/nodes/*_node.py: reinstall when that list changes.
pkg_hash=$( (cat setup.py setup.cfg package.xml; ls motus_ros/nodes) | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.motus_package" 2>/dev/null)" != "$pkg_hash" ]; then
    say "installing motus_ros (editable) into $VENV"
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v -i -E 'warn|^\s*$|!!|wheel_obj|\*{5}' || true
    echo "$pkg_hash" > "$VENV/.motus_package"
fi
say "environment ready: $VENV ($("$VENV/bin/python" -c 'import rclpy, torch, motus_msgs; print("rclpy ok, torch", torch.__version__)' 2>&1 | tail -1))"
