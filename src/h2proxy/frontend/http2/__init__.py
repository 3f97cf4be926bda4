"""The HTTP/2 front end: H2Connection, H2Stream, request validation and the connection factory."""
