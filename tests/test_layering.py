"""Twins never import drivers: a module of labctl.sim may take from labctl.instruments only what
both ends of a link agree on (the wire-spec modules) and the transport interface."""
import ast
from pathlib import Path

import labctl.instruments
import labctl.sim
import pytest

INSTRUMENTS = "labctl.instruments"
#: what the twins may import from labctl.instruments
SHARED = {f"{INSTRUMENTS}.{name}" for name in ("transport", "fpga_wire", "keysight33500b_spec")}
SIM_ROOT = Path(labctl.sim.__path__[0])
SIM_MODULES = sorted(SIM_ROOT.rglob("*.py"))


def imported(source: str, package: str) -> set[str]:
    """Every module, or module attribute, that `source` (a module of `package`) imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def drivers_imported(source: str, package: str) -> list[str]:
    """What `source` imports from labctl.instruments beyond the shared modules."""
    return sorted(name for name in imported(source, package)
                  if (name == INSTRUMENTS or name.startswith(INSTRUMENTS + "."))
                  and not any(name == shared or name.startswith(shared + ".") for shared in SHARED))


def test_the_check_sees_absolute_and_relative_driver_imports():
    assert drivers_imported("from labctl.instruments.fpga import LineMode", "labctl.sim") == \
        ["labctl.instruments.fpga.LineMode"]
    assert drivers_imported("from ..instruments import fpga, transport", "labctl.sim") == \
        ["labctl.instruments.fpga"]
    assert drivers_imported("def f():\n    import labctl.instruments.keysight33500b", "labctl.sim") == \
        ["labctl.instruments.keysight33500b"]
    assert drivers_imported("from labctl.instruments.fpga_wire import LineMode\n"
                            "from .board import VirtualBoard", "labctl.sim") == []


@pytest.mark.parametrize("path", SIM_MODULES, ids=lambda path: path.name)
def test_twin_modules_import_no_driver(path):
    package = ".".join(("labctl.sim", *path.relative_to(SIM_ROOT).parent.parts))
    assert not drivers_imported(path.read_text(encoding="utf-8"), package), \
        f"{path.name} imports a driver module; move what it needs into a shared spec module"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_modules_import_no_driver(name):
    path = Path(labctl.instruments.__path__[0], name.rsplit(".", 1)[1] + ".py")
    assert not drivers_imported(path.read_text(encoding="utf-8"), INSTRUMENTS), \
        f"{path.name} is shared with the twins but imports a driver module"
