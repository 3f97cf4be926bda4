"""The proxies under test (h2proxy, nginx, Twisted's HTTP/2 proxy), the configuration each
is run with, and the origins they all forward to.

nginx is tuned as an operator would for a keep-alive HTTP/1.1 backend, and h2proxy
gets the same origin keep-alive (see NGINX_CONF).
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from processes import BenchError, Child, Launcher, free_port, leaf_pids, port_open
from settings import Settings

BENCH = Path(__file__).resolve().parent

#: What both proxies get towards the origin, so that neither has more kept-alive
#: connections, more requests per connection or a longer idle life than the other.
#: The keep-alive must cover the most requests in flight (W1: 32 connections x 16
#: streams = 512): with fewer, every response past the limit closes its origin
#: connection and the next request opens one, so both proxies churn connections at the
#: request rate and the bench measures connect() rather than proxying.
UPSTREAM_KEEPALIVE = 512          # idle connections kept per worker
UPSTREAM_REQUESTS = 100_000       # requests one origin connection carries
UPSTREAM_IDLE_SECONDS = 600       # an idle origin connection lives this long
#: Streams a client may open at once on either proxy (h2proxy's default; nginx's is 128).
MAX_CONCURRENT_STREAMS = 100


@dataclass
class Backends:
    """What every proxy forwards to, and the files they need."""

    workdir: Path
    cert: str
    key: str
    origin_port: int
    drip_port: int
    origin: Child


class Peer:
    """One proxy under test. Subclasses say how to configure and start it."""

    name = ""

    def __init__(self, launcher: Launcher, backends: Backends, settings: Settings) -> None:
        self.launcher = launcher
        self.backends = backends
        self.settings = settings
        self.child: Child | None = None
        self.port = 0
        self.error: str | None = None
        self.config_text = ""   # the configuration it was last started with, for the report

    def start(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        if not self.alive():
            raise BenchError(f"{self.name} is not running:\n{self.child.tail() if self.child else ''}")
        return leaf_pids(self.child.process.pid)

    def alive(self) -> bool:
        return self.child is not None and self.child.process.poll() is None

    def ensure_running(self) -> None:
        """Start (or restart after a crash) once per call; remember why it failed."""
        if self.alive():
            return
        if self.child is not None:
            self.launcher.stop(self.child)
        try:
            self.start()
            self.error = None
        except BenchError as error:
            self.error = str(error)
            raise

    def restart(self) -> None:
        """A fresh process, so memory figures are not inflated by earlier workloads."""
        if self.child is not None:
            self.launcher.stop(self.child)
            self.child = None
        self.ensure_running()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class H2ProxyPeer(Peer):
    name = "h2proxy"

    def config(self) -> dict:
        """h2proxy's config: the origin upstream kept alive exactly as nginx's (see NGINX_CONF)."""
        b = self.backends
        config = {
            "workers": self.settings.workers,
            "listeners": [{"name": "bench", "address": "127.0.0.1", "port": 0,
                           "tls": {"certificates": [{"cert": b.cert, "key": b.key}]}}],
            "upstreams": {"origin": {"servers": [{"address": f"127.0.0.1:{b.origin_port}"}],
                                     "keepalive": UPSTREAM_KEEPALIVE, "max_requests": UPSTREAM_REQUESTS,
                                     "keepalive_idle": f"{UPSTREAM_IDLE_SECONDS}s"},
                          "drip": {"servers": [{"address": f"127.0.0.1:{b.drip_port}"}]}},
            "routes": [{"host": "*", "path": "/drip", "upstream": "drip"},
                       {"host": "*", "path": "/", "upstream": "origin"}],
            "timeouts": {"idle": "600s"},
            "http2": {"max_concurrent_streams": MAX_CONCURRENT_STREAMS, **self.settings.http2},
        }
        for dotted, value in self.settings.overrides.items():
            *parents, leaf = dotted.split(".")
            node = config
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return config

    def start(self, extra_twistd: tuple[str, ...] = ()) -> None:
        import yaml

        path = self.backends.workdir / "h2proxy.yaml"
        self.config_text = yaml.safe_dump(self.config(), sort_keys=False)
        path.write_text(self.config_text)
        twistd = shutil.which("twistd") or str(Path(sys.executable).with_name("twistd"))
        argv = [twistd, "-n", "--pidfile=", "--logfile=-", *extra_twistd, "h2proxy", "-c", str(path)]
        listening = re.compile(r"listener bench on [^ ]*:(\d+)")
        serving = re.compile(r"worker .* is ready|serving with")   # the supervisor's word that a worker took over

        def ready(text: str) -> re.Match | None:
            return listening.search(text) if serving.search(text) else None

        self.child, match = self.launcher.start("h2proxy", argv, "proxy", ready, cwd=self.backends.workdir)
        self.port = int(match.group(1))


NGINX_CONF = """\
# nginx as an operator tunes it in front of a keep-alive HTTP/1.1 backend.
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    upstream origin {{
        server 127.0.0.1:{origin};
        keepalive {keepalive};                # idle origin connections kept per worker
        keepalive_requests {requests};
        keepalive_timeout {idle}s;
    }}
    upstream drip {{ server 127.0.0.1:{drip}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        http2_max_concurrent_streams {streams};
        keepalive_requests 1000000;           # h2load does not reconnect after GOAWAY
        keepalive_timeout 600s;               # idle connections stay for the idle measurement
        client_max_body_size 0;
        client_body_buffer_size 1m;
        proxy_http_version 1.1;               # keep-alive to the origin
        proxy_set_header Connection "";
        proxy_request_buffering off;          # stream uploads, as h2proxy does
        proxy_buffering on;                   # read responses ahead (the default)
        proxy_buffer_size 64k;
        proxy_buffers 8 64k;
        proxy_busy_buffers_size 128k;         # nginx requires less than 7 x 64k (all buffers but one)
        location / {{ proxy_pass http://origin; }}
        location /drip {{ proxy_pass http://drip; }}
    }}
}}
"""


class NginxPeer(Peer):
    name = "nginx"

    def start(self) -> None:
        work = self.backends.workdir
        (work / "nginx-tmp").mkdir(exist_ok=True)
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.config_text = NGINX_CONF.format(
            work=work, workers=self.settings.workers, nofile=nofile,
            connections=max(1024, nofile // 2 - 64),
            origin=self.backends.origin_port, keepalive=UPSTREAM_KEEPALIVE, requests=UPSTREAM_REQUESTS,
            idle=UPSTREAM_IDLE_SECONDS, drip=self.backends.drip_port, port=self.port,
            streams=self.settings.http2.get("max_concurrent_streams", MAX_CONCURRENT_STREAMS), cert=self.backends.cert, key=self.backends.key)
        (work / "nginx.conf").write_text(self.config_text)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        argv = [nginx, "-c", str(work / "nginx.conf"), "-p", str(work), "-e", str(work / "nginx-error.log")]
        self.child, _ = self.launcher.start("nginx", argv, "proxy", lambda _: port_open(self.port))


class TwistedPeer(Peer):
    name = "twisted"

    def start(self) -> None:
        b = self.backends
        argv = [sys.executable, str(BENCH / "twisted_proxy.py"), "--port", "0", "--cert", b.cert,
                "--key", b.key, "--origin", f"127.0.0.1:{b.origin_port}",
                "--route", f"/drip=127.0.0.1:{b.drip_port}"]
        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
        self.config_text = " ".join(argv[1:])   # nothing tuned: its whole configuration is the command line
        self.child, match = self.launcher.start("twisted", argv, "proxy", pattern.search)
        self.port = int(match.group(1))


PEERS = {"h2proxy": H2ProxyPeer, "nginx": NginxPeer, "twisted": TwistedPeer}


def start_backends(launcher: Launcher, workdir: Path, origin_binary: Path) -> Backends:
    cert_dir = workdir / "cert"
    subprocess.run([sys.executable, "-m", "h2proxy_tools.devcert", str(cert_dir)], check=True,
                   capture_output=True, timeout=60)
    origin_re = re.compile(r"origin listening on 127\.0\.0\.1:(\d+)")
    origin, match = launcher.start("origin", [str(origin_binary), "0"], "load", origin_re.search)
    drip_re = re.compile(r"drip listening on 127\.0\.0\.1:(\d+)")
    _, drip = launcher.start("drip", [sys.executable, str(BENCH / "drip.py"), "--port", "0"], "load",
                             drip_re.search)
    return Backends(workdir, str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"),
                    int(match.group(1)), int(drip.group(1)), origin)
