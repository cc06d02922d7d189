"""pixeldojo-cli: a command-line client (and small library) for PixelDojo's async API."""

__version__ = "0.1.0"
