"""Stand-in for the pip bootstrap script ansible-test downloads (no internet here).

ansible-test runs it inside each new virtual environment as
`python get_pip.py [--no-setuptools] [--no-wheel] pip==X ...`: install pip from the
standard library's bundled wheel, then let that pip install what was asked.
scripts/sanity.sh copies it to ~/.ansible/test/cache/get_pip_<version>.py.
"""

import subprocess
import sys

WANTED = [arg for arg in sys.argv[1:] if not arg.startswith("--no-")]
subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True)
if WANTED:
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *WANTED], check=True)
