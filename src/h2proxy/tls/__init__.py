"""TLS for the listeners: server contexts (ALPN, SNI) and the batching TLS protocol."""
