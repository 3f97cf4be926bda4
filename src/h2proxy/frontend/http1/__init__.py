"""The HTTP/1.1 front end: clients on the same listeners (ALPN http/1.1 or no preface)."""
