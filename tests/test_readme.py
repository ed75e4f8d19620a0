"""The README's generated parts are current, and its commands exist."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ops_table_is_current():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "ops_table.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```sh") + 1: readme.index("```sh") + 3]
    assert block[0].startswith("./tools/setup.sh &&") and "edgec compile" in block[0]
    assert block[1].startswith("./tools/setup.sh --test &&")
    test_command = block[1].split("&&", 1)[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
