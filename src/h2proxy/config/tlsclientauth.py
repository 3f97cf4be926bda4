"""The ``client_auth`` section of a listener's TLS: asking clients for a certificate.

Its own module so that the schema (model.py) only names it; the checks of the CA
file are in tlscheck.py and run when the config is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2proxy.config.spec import Boolean, FilePath, option


@dataclass(frozen=True, slots=True)
class ClientAuthConfig:
    """Mutual TLS: clients present a certificate signed by one of these CAs. The
    verified identity reaches the backend in ``x-forwarded-client-cert``."""

    ca_file: str = option(
        FilePath(), "PEM bundle of the CAs that sign client certificates (relative to the config file)."
    )
    required: bool = option(
        Boolean(),
        "Refuse the handshake without a valid client certificate; false: ask for one, accept connections without.",
        default=True,
    )
