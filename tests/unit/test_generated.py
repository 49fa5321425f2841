"""Files generated from the platform registry are up to date (scripts/generate.py)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_files_match_the_registry():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "generate.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
