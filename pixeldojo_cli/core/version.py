"""The package version (read by the build backend; cheap to import)."""

__version__ = "0.1.0"
