"""ament_python package motus_ros: nodes, model, drivers and tools of the Motus ROS 2 stack."""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "motus_ros"
HERE = Path(__file__).resolve().parent


def node_entry_points() -> list[str]:
    """One console script per node module: motus_ros/nodes/<name>_node.py -> <name>_node."""
    scripts = []
    for path in sorted((HERE / PACKAGE / "nodes").glob("*_node.py")):
        scripts.append(f"{path.stem} = {PACKAGE}.nodes.{path.stem}:main")
    return scripts


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Install every file under folder/ to share/motus_ros/folder/, keeping sub-folders."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(f"{folder}/**/*", recursive=True)):
        if Path(path).is_file() and "__pycache__" not in path:
            entries.setdefault(str(Path("share", PACKAGE, Path(path).parent)), []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_files("launch"),
        *share_files("config"),
        *share_files("calibration"),
        *share_files("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="motus_ros maintainers",
    maintainer_email="maintainers@users.noreply.r-seed-61ae3dcd.example",
    description="ROS 2 stack for the Motus unified latent-action world model on bimanual arms.",
    license="MIT",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"motus-ros = {PACKAGE}.cli:main", *node_entry_points()],
    },
)
