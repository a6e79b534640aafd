"""The package version, read by pyproject.toml too, so it is written in one place."""

__version__ = "0.1.0"
USER_AGENT = f"pushaas-python/{__version__}"
