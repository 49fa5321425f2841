"""Fixtures shared by the integration tests: `vcsim` (the vCenter simulator
peer, see vcsim_peer.py) is requested by name."""

from vcsim_peer import vcsim  # noqa: F401 pylint: disable=unused-import
