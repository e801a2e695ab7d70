# The package version, in one place: the build backend (_build/) and the
# transport's User-Agent read it from here.
"""The forkd SDK's version."""

__version__ = "0.1.0"
