"""The package version, in one place (the package face and the compiler both read it)."""

__version__ = "0.1.0"
