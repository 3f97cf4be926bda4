"""The configuration: schema (model.py), loader (load.py), reference renderer (docs.py).

    from h2proxy.config.load import load_config
    config = load_config("/etc/h2proxy/h2proxy.yaml")   # raises ConfigError with every problem
    for warning in config.warnings: ...

Plain data and file reading only: nothing here imports Twisted or another layer.
"""
