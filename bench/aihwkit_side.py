"""IBM aihwkit beside labctl: bench/aihwkit_ops.py runs in the venv that bench/setup_aihwkit.sh
makes (aihwkit and torch are not labctl's dependencies); this returns its JSON."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

AIHWKIT_PYTHON = Path(os.environ.get("AIHWKIT_HOME", Path.home() / ".cache/labctl-aihwkit")) / "venv/bin/python"


def aihwkit_report(*arguments: str) -> dict:
    """bench/aihwkit_ops.py's JSON for these arguments, or {"skipped": why}."""
    if not AIHWKIT_PYTHON.exists():
        return {"skipped": f"no {AIHWKIT_PYTHON}: run bench/setup_aihwkit.sh first"}
    command = [str(AIHWKIT_PYTHON), str(Path(__file__).with_name("aihwkit_ops.py")), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        return {"skipped": f"aihwkit_ops.py failed: {done.stderr.strip()[-500:]}"}
    return json.loads(done.stdout)
