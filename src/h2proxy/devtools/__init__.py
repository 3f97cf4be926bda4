"""Tools for demos, tests and benchmarks; nothing here runs in the proxy itself."""
