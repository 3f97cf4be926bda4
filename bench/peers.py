"""The proxies under test (h2proxy, nginx, Twisted's HTTP/2 proxy), the configuration each
is run with, and the origins they all forward to.

nginx is tuned as an operator would for a keep-alive HTTP/1.1 backend, and h2proxy
gets the same origin keep-alive (see NGINX_CONF).
"""

from __future__ import annotations

import enum
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
#: Seconds h2proxy's --check may take.
CHECK_TIMEOUT = 60
#: A problem line of h2proxy's config loader: "PATH:LINE:COL: what is wrong".
CONFIG_PROBLEM = re.compile(r"^\S+:\d+:\d+: ")
#: The gzip level both proxies compress W8's HTML at (nginx's gzip_comp_level; h2proxy's
#: default level is 6 too).
COMPRESS_LEVEL = 6


class Feature(enum.Enum):
    """A configuration a workload needs on top of the plain reverse proxy.

    A peer runs the plain configuration for W1-W6 and idle, and is restarted with a
    feature's configuration for the workload that needs it, so that a feature one
    proxy lacks (or a configuration one build refuses) fails that workload only.
    """

    STATIC = "static"        # W7: files served from disk under /static/
    COMPRESS = "compress"    # W8: /html/ responses gzipped for clients that accept it


@dataclass
class Backends:
    """What every proxy forwards to, and the files they need."""

    workdir: Path
    cert: str
    key: str
    origin_port: int
    drip_port: int
    origin: Child

    @property
    def static_root(self) -> Path:
        """The directory whose files both proxies serve under /static/ (W7)."""
        return self.workdir / "static"


class Peer:
    """One proxy under test. Subclasses say how to configure and start it."""

    name = ""
    #: The features this proxy has; workloads needing another are not run against it.
    features: frozenset[Feature] = frozenset()

    def __init__(self, launcher: Launcher, backends: Backends, settings: Settings) -> None:
        self.launcher = launcher
        self.backends = backends
        self.settings = settings
        self.child: Child | None = None
        self.port = 0
        self.error: str | None = None
        self.feature: Feature | None = None   # the feature the running configuration has, if any
        #: The configuration text each variant was last started with, for the report:
        #: "" for the plain one, else the feature's name.
        self.configs: dict[str, str] = {}

    def start(self) -> None:
        """Start the proxy with the configuration for C{self.feature}."""
        raise NotImplementedError

    def supports(self, feature: Feature | None) -> bool:
        return feature is None or feature in self.features

    def _remember_config(self, text: str) -> None:
        self.configs[self.feature.value if self.feature else ""] = text

    def pids(self) -> list[int]:
        if not self.alive():
            raise BenchError(f"{self.name} is not running:\n{self.child.tail() if self.child else ''}")
        return leaf_pids(self.child.process.pid)

    def alive(self) -> bool:
        return self.child is not None and self.child.process.poll() is None

    def ensure_running(self, feature: Feature | None = None) -> None:
        """Start (or restart after a crash, or with another feature's configuration) once
        per call; remember why it failed."""
        if self.alive() and self.feature is feature:
            return
        if self.child is not None:
            self.launcher.stop(self.child)
            self.child = None
        self.feature = feature
        try:
            self.start()
            self.error = None
        except BenchError as error:
            self.error = str(error)
            if feature is None:
                raise
            raise BenchError(f"{self.name} did not start with the {feature.value} configuration: {error}") \
                from error

    def restart(self, feature: Feature | None = None) -> None:
        """A fresh process, so memory figures are not inflated by earlier workloads."""
        if self.child is not None:
            self.launcher.stop(self.child)
            self.child = None
        self.ensure_running(feature)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


class H2ProxyPeer(Peer):
    name = "h2proxy"
    features = frozenset(Feature)

    def feature_routes(self) -> list[dict]:
        """The route the running feature adds (matched before "/" as the longer prefix)."""
        if self.feature is Feature.STATIC:
            return [{"host": "*", "path": "/static", "static": {"root": str(self.backends.static_root)}}]
        if self.feature is Feature.COMPRESS:
            return [{"host": "*", "path": "/html", "upstream": "origin",
                     "compress": {"types": ["text/html"], "level": COMPRESS_LEVEL}}]
        return []

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
            "routes": [*self.feature_routes(), {"host": "*", "path": "/drip", "upstream": "drip"},
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

    @staticmethod
    def check(twistd: str, path: Path) -> None:
        """Run C{--check} first, so that a configuration this build refuses (a feature it
        does not have yet) fails with the loader's own file:line:col problems."""
        done = subprocess.run([twistd, "-n", "h2proxy", "-c", str(path), "--check"], capture_output=True,
                              text=True, timeout=CHECK_TIMEOUT, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            problems = [line.split(": ", 1)[1] for line in output.splitlines() if CONFIG_PROBLEM.match(line)]
            raise BenchError(f"h2proxy --check refused the configuration: {'; '.join(problems) or 'see below'}"
                             f"\n{output}")

    def start(self, extra_twistd: tuple[str, ...] = ()) -> None:
        import yaml

        path = self.backends.workdir / "h2proxy.yaml"
        text = yaml.safe_dump(self.config(), sort_keys=False)
        self._remember_config(text)
        path.write_text(text)
        twistd = shutil.which("twistd") or str(Path(sys.executable).with_name("twistd"))
        self.check(twistd, path)
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
{feature_locations}    }}
}}
"""

#: W7's location: files served from disk as an operator tunes nginx for them.
NGINX_STATIC = """        # Files from disk, tuned as an operator serves them. sendfile and tcp_nopush
        # save copies on cleartext (or kernel TLS) only; over this TLS nginx still reads
        # the file and writes it through OpenSSL.
        location /static/ {{
            root {work};                      # /static/x is {work}/static/x
            sendfile on;
            tcp_nopush on;
            open_file_cache max=100;          # descriptors and sizes kept between requests
        }}
"""

#: W8's location: proxied HTML gzipped at the level h2proxy's route uses.
NGINX_COMPRESS = """        # Proxied HTML gzipped for clients that accept it.
        location /html/ {{
            proxy_pass http://origin;
            gzip on;
            gzip_comp_level {level};               # h2proxy's default level is 6 too
            gzip_types text/css application/json;  # text/html is always in gzip_types (listing it warns)
            gzip_proxied any;                      # also for requests another proxy forwarded (Via)
        }}
"""


class NginxPeer(Peer):
    name = "nginx"
    features = frozenset(Feature)

    def feature_locations(self) -> str:
        """The location block the running feature adds, if any."""
        if self.feature is Feature.STATIC:
            return NGINX_STATIC.format(work=self.backends.workdir)
        if self.feature is Feature.COMPRESS:
            return NGINX_COMPRESS.format(level=COMPRESS_LEVEL)
        return ""

    def start(self) -> None:
        work = self.backends.workdir
        (work / "nginx-tmp").mkdir(exist_ok=True)
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        text = NGINX_CONF.format(
            work=work, workers=self.settings.workers, nofile=nofile,
            connections=max(1024, nofile // 2 - 64),
            origin=self.backends.origin_port, keepalive=UPSTREAM_KEEPALIVE, requests=UPSTREAM_REQUESTS,
            idle=UPSTREAM_IDLE_SECONDS, drip=self.backends.drip_port, port=self.port,
            streams=self.settings.http2.get("max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            cert=self.backends.cert, key=self.backends.key, feature_locations=self.feature_locations())
        self._remember_config(text)
        (work / "nginx.conf").write_text(text)
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
        self._remember_config(" ".join(argv[1:]))   # nothing tuned: its whole configuration is the command line
        self.child, match = self.launcher.start("twisted", argv, "proxy", pattern.search)
        self.port = int(match.group(1))


PEERS = {"h2proxy": H2ProxyPeer, "nginx": NginxPeer, "twisted": TwistedPeer}


def start_backends(launcher: Launcher, workdir: Path, origin_binary: Path) -> Backends:
    cert_dir = workdir / "cert"
    # W7's root exists before any peer starts: h2proxy checks a static root at load.
    (workdir / "static").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([sys.executable, "-m", "h2proxy_tools.devcert", str(cert_dir)], check=True,
                   capture_output=True, timeout=60)
    origin_re = re.compile(r"origin listening on 127\.0\.0\.1:(\d+)")
    origin, match = launcher.start("origin", [str(origin_binary), "0"], "load", origin_re.search)
    drip_re = re.compile(r"drip listening on 127\.0\.0\.1:(\d+)")
    _, drip = launcher.start("drip", [sys.executable, str(BENCH / "drip.py"), "--port", "0"], "load",
                             drip_re.search)
    return Backends(workdir, str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"),
                    int(match.group(1)), int(drip.group(1)), origin)
