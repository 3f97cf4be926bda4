"""twistd plugin: ``twistd h2proxy -c conf.yaml``. The work lives in h2proxy.supervisor.tap."""

from twisted.application.service import ServiceMaker

h2proxy = ServiceMaker(
    "h2proxy", "h2proxy.supervisor.tap", "HTTP/2 reverse proxy to HTTP/1.1 backends", "h2proxy"
)
