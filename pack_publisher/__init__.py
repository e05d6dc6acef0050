"""Build Greentic `.gtpack` archives and publish them to OCI registries, pinned by digest."""

__version__ = "0.1.0"  # the one place: pyproject.toml reads it, the User-Agent and provenance name it
