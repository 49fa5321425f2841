"""Make the checkout importable as ansible_collections.virtops.unified.

scripts/bootstrap.sh links the checkout at .build/collections/ansible_collections/
virtops/unified; tests import the collection from there, as Ansible does.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".build", "collections")

if not os.path.isdir(os.path.join(COLLECTIONS, "ansible_collections", "virtops", "unified")):
    raise RuntimeError("run scripts/bootstrap.sh first: %s is missing" % COLLECTIONS)
sys.path.insert(0, COLLECTIONS)
os.environ.setdefault("ANSIBLE_CONFIG", os.path.join(ROOT, "ansible.cfg"))
