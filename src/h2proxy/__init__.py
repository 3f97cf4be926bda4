"""h2proxy: a multi-process HTTP/2 reverse proxy daemon on Twisted."""

__version__ = "0.1.0"
