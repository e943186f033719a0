"""The package version: one leaf module, so that any module can read it without importing the package."""

__version__ = "0.3.0"
