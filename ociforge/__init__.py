"""ociforge: daemonless, reproducible OCI image assembly."""

__version__ = "0.1.0"

# Bumped whenever the bytes a layer source produces could change for the same
# inputs (tar rules, compression settings, a changed default of a source field):
# part of every layer's input key. A change confined to one source kind bumps that
# source's own "v" in its key material instead, invalidating only its layers.
LAYER_FORMAT_VERSION = 1
