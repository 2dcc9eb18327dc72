"""The engine's version, stamped on every result (kept in step with pyproject.toml by a test)."""

__version__ = "0.1.0"
