"""Tests use the same containerd manager as `ociforge test` (no second copy)."""

from ociforge.checks.containerd import Containerd, can_run_containers

__all__ = ["Containerd", "can_run_containers"]
