"""docs/examples/labctl-drift, the package docs/writing-a-protocol.md builds, works as documented:
its entry point puts `drift` in the CLI, and its own test passes on both stations of the
labctl_station fixture (labctl's pytest plugin)."""
import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "labctl-drift"


def installed(tmp_path: Path) -> dict:
    """The example as an installed distribution (its metadata and entry points) on PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "labctl_drift-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: labctl-drift\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text('[labctl.protocols]\ndrift = labctl_drift.drift:Drift\n')
    path = os.pathsep.join([str(site), str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "XDG_STATE_HOME": str(tmp_path / "state")}


def test_the_example_protocol_package_joins_labctl_and_its_tests_pass(tmp_path):
    env = installed(tmp_path)
    listed = subprocess.run([sys.executable, "-m", "labctl.cli", "protocols", "--json"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "drift" in {p["name"] for p in json.loads(listed)}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-2000:]
    assert "2 passed" in tests.stdout  # sim and virtual-lab
