"""The wheel installs one top-level name, `labctl`: the design card's folders (instruments/,
protocols/, sim_backend/, gui/) are mapped to labctl.instruments, labctl.protocols, labctl.sim and
labctl.gui (pyproject.toml, [tool.setuptools.package-dir])."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "labctl", "instruments", "protocols", "sim_backend", "gui")


def test_wheel_has_one_top_level_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    # the same build as `make`'s editable install: setuptools from the index in an isolated env
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("labctl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"labctl"}
    assert {"labctl/instruments/fpga.py", "labctl/protocols/train.py", "labctl/sim/physics.py",
            "labctl/sim/device_cmo_hfox.toml", "labctl/gui/window.py", "labctl/stations/sim.toml"} <= names
