"""The protocol registry: protocols join through the `labctl.protocols` entry points, labctl's own
as a user's package's; the engine imports no protocol module."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from labctl.engine import run_protocol
from labctl.registry import ENTRY_POINT_GROUP, PROTOCOLS, ProtocolRegistry
from labctl.station import Station

PLUGIN = '''
from labctl.engine import Protocol
from labctl.params import Parameter


class CellProbe(Protocol):
    name = "cell_probe"
    title = "Read one cell (a protocol of another package)"
    parameters = (Parameter("row", "int", 0, "", minimum=0, doc="word line"),
                  Parameter("v_read", "float", 0.2, "V", minimum=0.0, soa="max_v_bl", doc="read voltage"),)

    def run(self, ctx):
        p = ctx.params
        return {"current": ctx.crossbar.read_cell(p["row"], 0, p["v_read"], 1.2)}


class Misnamed(CellProbe):
    name = "something_else"


class Forming(CellProbe):
    name = "forming"
'''


def plugin_package(root, entries: dict[str, str]):
    """A package `lab_plugin` installed at `root` (a dist-info with the given entry points)."""
    (root / "lab_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "lab_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    return root


def test_builtins_come_from_entry_points_and_engine_imports_no_protocol():
    fresh = ProtocolRegistry()
    assert {"forming", "mvm", "train", "inference", "write_verify"} <= set(fresh)
    assert not fresh.errors
    assert all(type(p).__module__ == f"labctl.protocols.{type(p).__module__.rsplit('.', 1)[1]}" for p in fresh.values())
    code = ("import sys, labctl.engine, labctl.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('labctl.protocols.')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_a_plugin_protocol_joins_the_cli_and_runs(tmp_path, monkeypatch):
    (tmp_path / "site").mkdir()
    site = plugin_package(tmp_path / "site", {"cell_probe": "lab_plugin:CellProbe"})
    monkeypatch.syspath_prepend(str(site))
    registry = ProtocolRegistry()
    assert "cell_probe" in registry and not registry.errors
    assert list(registry)[-1] == "cell_probe"  # after the built-ins
    with Station.open("sim", sim_state=tmp_path / "chip.npz", seed=1) as station:
        station.lab.physics.formed[0, 0] = True
        result = run_protocol(station, registry["cell_probe"], {"row": 0}, out=tmp_path / "run.h5")
    assert result.status == "completed" and result.summary["current"] > 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = subprocess.run([sys.executable, "-m", "labctl.cli", "protocols", "--json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "cell_probe" in {p["name"] for p in json.loads(listed)}
    bad = subprocess.run([sys.executable, "-m", "labctl.cli", "run", "cell_probe", "--station", "sim",
                          "--sim-state", str(tmp_path / "chip.npz"), "--out", str(tmp_path / "cli.h5"),
                          "--set", "v_read=9"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "v_read" in bad.stderr  # the station's limit applies to a plugin too


@pytest.mark.parametrize("entry, why", [
    ("lab_plugin_missing:CellProbe", "does not load: ModuleNotFoundError"),
    ("lab_plugin:Misnamed", "names its protocol 'something_else'"),
    ("lab_plugin:PLUGIN_NOT_HERE", "does not load: AttributeError"),
])
def test_a_broken_plugin_is_left_out_with_the_reason(tmp_path, monkeypatch, entry, why):
    monkeypatch.syspath_prepend(str(plugin_package(tmp_path, {"cell_probe": entry})))
    registry = ProtocolRegistry()
    assert "cell_probe" not in registry and "forming" in registry
    (where, reason), = registry.errors.items()
    assert "cell_probe" in where and "lab-plugin" in where and why in reason


def test_a_plugin_cannot_shadow_a_builtin(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_package(tmp_path, {"forming": "lab_plugin:Forming"})))
    registry = ProtocolRegistry()
    assert type(registry["forming"]).__module__ == "labctl.protocols.forming"
    (reason,) = registry.errors.values()
    assert "'forming' is taken by labctl.protocols.forming" in reason


def test_the_shared_registry_is_the_engines():
    from labctl.engine import get_protocol

    assert get_protocol("forming") is PROTOCOLS["forming"]


def test_no_protocol_imports_another():
    """Protocols share code through the modules that are not protocols (protocols/common.py,
    programming.py, matrix.py) and labctl.aimc, never through each other."""
    import ast
    from pathlib import Path

    protocol_modules = {type(p).__module__.rsplit(".", 1)[1]: type(p).__module__ for p in PROTOCOLS.values()
                        if type(p).__module__.startswith("labctl.protocols.")}
    assert len(protocol_modules) >= 14
    folder = Path(__import__("labctl.protocols", fromlist=["x"]).__file__).parent
    crossings = []
    for name in protocol_modules:
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                target = (node.module or "") if node.level == 0 else f"labctl.protocols.{node.module or ''}"
                imported = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            else:
                continue
            crossings += [f"{name} imports {m}" for m in imported
                          if m in protocol_modules.values() and m != protocol_modules[name]]
    assert not crossings
