"""Build Greentic `.gtpack` archives and publish them to OCI registries, pinned by digest."""
