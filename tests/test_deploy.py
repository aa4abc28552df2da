"""The files in deploy/ as shipped: nginx and Caddy in front of a real server, the unit, the env.

Each proxy runs its shipped file with only what the guide tells an operator to change
(host name, certificate paths, the dashboard's port) plus the ports it listens on, since
tests must pick free ports instead of 80 and 443, and nginx's log path, since tests must
not write to /var/log. Every replacement is asserted, so a change to a shipped file that
the guide no longer describes fails here loudly.
"""

import contextlib
import datetime
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from requests.adapters import HTTPAdapter

from .support import (
    PASSWORD,
    TOKEN,
    Server,
    cli_command,
    create_user_with_cli,
    csrf_token,
    free_port,
    query,
    start_server,
    stop_server,
    wait_until,
)
from .ws import DEADLINE, close_quietly, delivery_ids, unique_message_id, until_caught_up

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = Path("/usr/sbin/nginx")
CADDY = Path("/usr/bin/caddy")
SYSTEMD_ANALYZE = Path("/usr/bin/systemd-analyze")
NGINX_ACCESS_LOG_NAME = "zapi-dashboard.access.log"
NGINX_ACCESS_LOG = f"/var/log/nginx/{NGINX_ACCESS_LOG_NAME}"

# What the shipped files say, and what an operator replaces it with.
SHIPPED_HOST = "dashboard.example.com"
SHIPPED_UPSTREAM = "127.0.0.1:8000"
# The certificate's name. localhost resolves to loopback everywhere, so clients send the
# SNI and Host a browser would, and no resolver needs changing. (Where it resolves to ::1
# first, a client bound to a 127.0.0.x address fails that one and uses 127.0.0.1.)
HOST = "localhost"
# Linux routes all of 127/8 to loopback: clients connect from these addresses while the
# proxy reaches the dashboard from 127.0.0.1, so only X-Forwarded-For can tell them apart.
CLIENT = "127.0.0.2"
THROTTLED_CLIENT = "127.0.0.3"
OTHER_CLIENT = "127.0.0.4"
SPOOFED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Port": "8443",
}
ADMIN = "ana"
# Fewer threads than slow clients: if a proxy handed them to the dashboard before their
# requests were complete, they would hold every thread and the webhooks would stall.
SERVER_THREADS = 16
SLOW_CLIENTS = 50


def require_program(path: Path, package: str) -> None:
    """Skip without ``path``; in CI (CI_REQUIRE_SERVICES=1), where it is installed, fail."""
    if path.exists():
        return
    reason = f"{path} is missing; install Debian's {package} package to run the deploy tests"
    if os.environ.get("CI_REQUIRE_SERVICES"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def substitute(text: str, replacements: list[tuple[str, str]]) -> str:
    """Apply each replacement, failing when the shipped text no longer contains it."""
    for old, new in replacements:
        assert old in text, f"the shipped file no longer contains {old!r}: update the guide"
        text = text.replace(old, new)
    return text


def write_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for HOST and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports (two free_port calls may return the same one)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def can_listen_on_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- the unit file and the environment file ---------------------------------------------


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit's sections, each a list of (key, value) in order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, separator, value = line.partition("=")
        assert separator, f"not a KEY=VALUE line: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_settings() -> dict[str, dict[str, str]]:
    """The shipped unit's settings, the last value of each key (as systemd reads most)."""
    text = (DEPLOY / "zapi-dashboard.service").read_text()
    return {name: dict(entries) for name, entries in unit_entries(text).items()}


def env_template() -> dict[str, str]:
    """The shipped environment file, checked line by line as systemd's EnvironmentFile=."""
    values = {}
    for number, line in enumerate((DEPLOY / "zapi-dashboard.env").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        # No `export`, no quotes, no spaces: systemd would keep quotes and a trailing
        # comment in the value, and a shell-minded edit must not creep in unnoticed.
        found = re.fullmatch(r"([A-Z][A-Z0-9_]*)=([^\s'\"#]*)", line)
        assert found, f"zapi-dashboard.env:{number} is not KEY=VALUE: {line!r}"
        values[found.group(1)] = found.group(2)
    return values


def test_the_unit_has_the_settings_the_guide_relies_on():
    unit = unit_settings()
    service = unit["Service"]
    assert unit["Unit"]["After"] == "network-online.target"
    assert "network-online.target" in unit["Unit"]["Wants"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    expected = {
        "User": "zapi-dashboard",
        "Group": "zapi-dashboard",
        "StateDirectory": "zapi-dashboard",
        "StateDirectoryMode": "0700",
        "EnvironmentFile": "/etc/zapi-dashboard/zapi-dashboard.env",
        "ExecStart": "/opt/zapi-dashboard/venv/bin/zapi-dashboard serve "
        "--host 127.0.0.1 --port 8000",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ReadWritePaths": "/var/lib/zapi-dashboard",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert "RestartSec" in service
    # Above gunicorn's graceful timeout (20 s), so a clean stop is never cut short.
    stop_seconds = re.fullmatch(r"(\d+)s?", service["TimeoutStopSec"])
    assert stop_seconds and int(stop_seconds.group(1)) > 20
    # The data dir the unit creates is the one the environment file points at.
    assert env_template()["DASHBOARD_DATA_DIR"] == "/var/lib/" + service["StateDirectory"]


def shipped_unit_copy(directory: Path) -> Path:
    """The unit with ExecStart on this machine's installed console script, same name."""
    installed = cli_command()[0]
    text = substitute(
        (DEPLOY / "zapi-dashboard.service").read_text(),
        [("ExecStart=/opt/zapi-dashboard/venv/bin/zapi-dashboard ", f"ExecStart={installed} ")],
    )
    copy = directory / "zapi-dashboard.service"
    copy.write_text(text)
    return copy


def test_the_unit_passes_systemd_analyze(tmp_path):
    if not SYSTEMD_ANALYZE.exists():
        pytest.skip(f"{SYSTEMD_ANALYZE} is missing; the unit's settings are still checked above")
    # As shipped, verify's only complaint is that /opt/zapi-dashboard/venv does not exist
    # here; pointed at the installed console script it must say nothing at all. (It does
    # not look up User=, which the test above checks.) Lines about the machine's own units,
    # which verify loads as dependencies, are not about this file.
    unit = shipped_unit_copy(tmp_path)
    verify = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    output = (verify.stdout + verify.stderr).splitlines()
    ours = [line for line in output if not re.match(r"/(usr/)?lib/systemd/|/etc/systemd/", line)]
    assert verify.returncode == 0 and ours == [], "\n".join(output)

    # The hardening, as systemd scores it: removing some of it raises the exposure.
    security = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    found = re.search(
        r"Overall exposure level for zapi-dashboard\.service: ([\d.]+)", security.stdout
    )
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0, security.stdout


def documented_settings() -> set[str]:
    """Every DASHBOARD_ variable of the README's configuration table."""
    return set(re.findall(r"^\| `(DASHBOARD_[A-Z0-9_]+)`", (ROOT / "README.md").read_text(), re.M))


def test_the_environment_file_sets_only_documented_settings():
    values = env_template()
    assert values["DASHBOARD_DATA_DIR"] == "/var/lib/zapi-dashboard"
    assert values["DASHBOARD_PUBLIC_URL"] == f"https://{SHIPPED_HOST}"
    assert values["DASHBOARD_TRUSTED_PROXIES"] == "1"
    # Set or commented out, every name it mentions is one the README documents.
    named = set(re.findall(r"DASHBOARD_[A-Z0-9_]+", (DEPLOY / "zapi-dashboard.env").read_text()))
    assert named >= set(values)
    assert named - documented_settings() == set()
    assert "DASHBOARD_DATABASE_URL" in named and "DASHBOARD_RETENTION_DAYS" in named


# -- the proxies in front of a real server ------------------------------------------------


@dataclass
class Deployment:
    """A proxy from deploy/ in front of a real ``zapi-dashboard serve``."""

    proxy: str
    base_url: str  # what a browser would type: https://localhost:<port>
    http_url: str  # the same on the plain-http port, which redirects
    port: int
    cert: Path
    server: Server
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """What the proxy has printed so far."""
        return self.log_path.read_text(errors="replace")

    def access_log(self) -> str:
        """nginx's access log of the site (Caddy writes none unless told to)."""
        return (self.log_path.parent / NGINX_ACCESS_LOG_NAME).read_text(errors="replace")


def nginx_command(directory: Path, site: str) -> list[str]:
    """nginx in the foreground with a minimal main config including the site file."""
    site_path = directory / "zapi-dashboard"
    site_path.write_text(site)
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private
    # temporary directory (its request bodies go there); elsewhere nginx ignores `user`.
    user = "user root;" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"""daemon off;
{user}
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    access_log {directory}/access.log;
    include {site_path};
}}
"""
    )
    return [str(NGINX), "-c", str(main), "-p", str(directory)]


def nginx_site(
    directory: Path, port: int, http_port: int, upstream: int, cert: Path, key: Path
) -> str:
    """deploy/nginx.conf with the operator's substitutions and the test's ports."""
    live = f"/etc/letsencrypt/live/{SHIPPED_HOST}"
    replacements = [
        # Not the operator's to change: the test must not write to /var/log/nginx.
        (NGINX_ACCESS_LOG, str(directory / NGINX_ACCESS_LOG_NAME)),
        (f"{live}/fullchain.pem;", f"{cert};"),
        (f"{live}/privkey.pem;", f"{key};"),
        (SHIPPED_HOST, HOST),
        (SHIPPED_UPSTREAM, f"127.0.0.1:{upstream}"),
        # Test ports instead of 80 and 443.
        ("listen 80;", f"listen {http_port};"),
        ("listen 443 ssl http2;", f"listen {port} ssl http2;"),
    ]
    if can_listen_on_ipv6():
        replacements += [
            ("listen [::]:80;", f"listen [::]:{http_port};"),
            ("listen [::]:443 ssl http2;", f"listen [::]:{port} ssl http2;"),
        ]
    else:  # a machine without IPv6 could not start the site at all
        replacements += [("listen [::]:80;", ""), ("listen [::]:443 ssl http2;", "")]
    return substitute((DEPLOY / "nginx.conf").read_text(), replacements)


def caddyfile(port: int, http_port: int, upstream: int, cert: Path, key: Path) -> str:
    """deploy/Caddyfile with the operator's substitutions and the test's ports."""
    site = substitute(
        (DEPLOY / "Caddyfile").read_text(),
        [
            # The guide's own-certificate line, filled in, instead of Let's Encrypt.
            (
                "# tls /etc/ssl/certs/dashboard.pem /etc/ssl/private/dashboard.key",
                f"tls {cert} {key}",
            ),
            # A Caddy site address is the host name and, here, the test's https port.
            (f"{SHIPPED_HOST} {{", f"{HOST}:{port} {{"),
            (SHIPPED_UPSTREAM, f"127.0.0.1:{upstream}"),
        ],
    )
    # Global options, which the shipped file leaves at their defaults: the admin API
    # would listen on localhost:2019, one port for every Caddy on the machine, and the
    # http->https redirect on port 80 (the http port the test checks instead).
    return f"{{\n\tadmin off\n\thttp_port {http_port}\n}}\n\n{site}"


def start_proxy(proxy: str, directory: Path, port: int, http_port: int, upstream: int, cert, key):
    """Start nginx or Caddy with its deploy/ file; returns (process, log path)."""
    directory.mkdir()
    environment = dict(os.environ)
    if proxy == "nginx":
        site = nginx_site(directory, port, http_port, upstream, cert, key)
        command = nginx_command(directory, site)
    else:
        config = directory / "Caddyfile"
        config.write_text(caddyfile(port, http_port, upstream, cert, key))
        command = [str(CADDY), "run", "--config", str(config), "--adapter", "caddyfile"]
        # Caddy keeps its state (autosaved config, certificates) under these.
        environment.update(
            HOME=str(directory),
            XDG_DATA_HOME=str(directory / "data"),
            XDG_CONFIG_HOME=str(directory / "config"),
        )
    log_path = directory / "proxy.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log_path


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM a process group started with start_new_session; SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class FromAddress(HTTPAdapter):
    """Connections that leave from a chosen loopback address."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        """The pool manager, binding each connection's source address."""
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def browser(deployment: Deployment, address: str = CLIENT) -> requests.Session:
    """A requests Session like a browser of the site: from ``address``, trusting the cert."""
    session = requests.Session()
    session.trust_env = False  # no proxy or CA bundle from the environment
    session.verify = str(deployment.cert)
    session.headers["Accept-Language"] = "en"
    adapter = FromAddress(address)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def sign_in(
    deployment: Deployment,
    session: requests.Session,
    username: str = ADMIN,
    password: str = PASSWORD,
    headers: dict | None = None,
) -> requests.Response:
    """Post the login form as a browser does, Referer included (CSRF checks it on https)."""
    page = session.get(f"{deployment.base_url}/login", timeout=30)
    assert page.status_code == 200, page.text
    form = {"username": username, "password": password, "csrf_token": csrf_token(page.text)}
    return session.post(
        f"{deployment.base_url}/login",
        data=form,
        headers={"Referer": f"{deployment.base_url}/login", **(headers or {})},
        allow_redirects=False,
        timeout=30,
    )


def post_webhook(deployment: Deployment, session: requests.Session, **extra) -> requests.Response:
    payload = {
        "type": "DeliveryCallback",
        "instanceId": "instance.id",
        "phone": "554499999999",
        "messageId": unique_message_id("deploy"),
        **extra,
    }
    return session.post(f"{deployment.base_url}/webhooks/{TOKEN}", json=payload, timeout=30)


def stored_id(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["duplicate"] is False, body
    return body["id"]


def wait_for_proxy(deployment: Deployment) -> None:
    """Wait until the dashboard's /healthz answers through the proxy, over https."""
    session = browser(deployment, "127.0.0.1")

    def healthy():
        if deployment.process.poll() is not None:
            raise AssertionError(f"{deployment.proxy} exited early:\n{deployment.log()}")
        try:
            answer = session.get(f"{deployment.base_url}/healthz", timeout=2)
        except (requests.ConnectionError, requests.Timeout):
            return False
        return answer.status_code == 200

    try:
        wait_until(healthy, message=f"{deployment.proxy} to proxy /healthz")
    finally:
        session.close()


def server_arguments(upstream: int) -> list[str]:
    """The unit's ExecStart arguments after `serve`, on the test's port."""
    command = unit_settings()["Service"]["ExecStart"].split()
    assert command[1] == "serve", command
    arguments = substitute(" ".join(command[2:]), [("--port 8000", f"--port {upstream}")])
    return [*arguments.split(), "--threads", str(SERVER_THREADS)]


def server_environment(data_dir: Path, port: int) -> dict[str, str]:
    """The environment template, with the operator's data dir and public address."""
    values = env_template()
    replacements = {
        "DASHBOARD_DATA_DIR": ("/var/lib/zapi-dashboard", str(data_dir)),
        "DASHBOARD_PUBLIC_URL": (f"https://{SHIPPED_HOST}", f"https://{HOST}:{port}"),
    }
    for name, (old, new) in replacements.items():
        assert values[name] == old, f"zapi-dashboard.env no longer sets {name}={old}"
        values[name] = new
    return values


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    return write_certificate(tmp_path_factory.mktemp("certificate"))


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def deployment(request, tmp_path_factory, certificate):
    """The shipped nginx site or Caddyfile in front of a real server, with one admin."""
    proxy = request.param
    require_program(NGINX if proxy == "nginx" else CADDY, proxy)
    directory = tmp_path_factory.mktemp(proxy)
    cert, key = certificate
    port, http_port, upstream = distinct_free_ports(3)
    data_dir = directory / "data"
    server = start_server(
        data_dir,
        *server_arguments(upstream),
        env=server_environment(data_dir, port),
        port=upstream,
    )
    process = None
    try:
        create_user_with_cli(server.data_dir, ADMIN, PASSWORD)
        process, log_path = start_proxy(
            proxy, directory / "proxy", port, http_port, upstream, cert, key
        )
        running = Deployment(
            proxy=proxy,
            base_url=f"https://{HOST}:{port}",
            http_url=f"http://{HOST}:{http_port}",
            port=port,
            cert=cert,
            server=server,
            process=process,
            log_path=log_path,
        )
        wait_for_proxy(running)
        yield running
    finally:
        if process is not None:
            stop_process_group(process)
        stop_server(server)


def test_plain_http_redirects_to_https(deployment):
    with browser(deployment) as session:
        answer = session.get(f"{deployment.http_url}/login", allow_redirects=False, timeout=30)
    assert answer.status_code in (301, 308), answer.text
    # nginx redirects to the standard https port, which the test replaced; Caddy to the
    # port of the site address.
    expected = {
        "nginx": f"https://{HOST}/login",
        "caddy": f"{deployment.base_url}/login",
    }[deployment.proxy]
    assert answer.headers["Location"] == expected


def test_signing_in_gives_a_secure_cookie_and_hsts(deployment):
    with browser(deployment) as session:
        page = session.get(f"{deployment.base_url}/login", timeout=30)
        assert "max-age=" in page.headers["Strict-Transport-Security"]
        # Forged X-Forwarded-* headers change nothing: the proxy sets its own.
        answer = sign_in(deployment, session, headers=SPOOFED)
        assert answer.status_code == 302, answer.text
        assert "max-age=" in answer.headers["Strict-Transport-Security"]
        assert answer.headers["Location"] in ("/", f"{deployment.base_url}/")
        (cookie,) = [c for c in session.cookies if c.name == "session"]
        assert cookie.secure, answer.headers["Set-Cookie"]
        assert "HttpOnly" in answer.headers["Set-Cookie"]
        home = session.get(f"{deployment.base_url}/", allow_redirects=False, timeout=30)
        assert home.status_code == 200


def open_socket(deployment: Deployment, cookie: str, origin: str, after: int):
    return websocket.create_connection(
        f"wss://{HOST}:{deployment.port}/ws/deliveries?after={after}",
        origin=origin,
        cookie=cookie,
        timeout=30,
        sslopt={"ca_certs": str(deployment.cert)},
    )


def test_the_live_socket_upgrades_and_receives_a_webhook(deployment):
    with browser(deployment) as session:
        assert sign_in(deployment, session).status_code == 302
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        warm_up = stored_id(post_webhook(deployment, session))

        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            close_quietly(open_socket(deployment, cookie, "https://evil.example", warm_up))
        assert refused.value.status_code == 403

        ws = open_socket(deployment, cookie, deployment.base_url, warm_up)
        try:
            assert ws.getstatus() == 101
            deadline = time.monotonic() + DEADLINE
            # Caught up: from now on the socket is subscribed, so nothing posted is missed.
            assert until_caught_up(ws, deadline) == ([], {"count": 0, "latest": warm_up})
            posted = stored_id(post_webhook(deployment, session))
            assert delivery_ids(ws, posted, deadline) == [posted]
        finally:
            close_quietly(ws)


def test_a_webhook_is_stored_and_too_big_a_body_stops_at_the_proxy(deployment):
    with browser(deployment) as session:
        assert sign_in(deployment, session).status_code == 302
        message_id = unique_message_id("stored")
        row = stored_id(post_webhook(deployment, session, messageId=message_id))
        stored = session.get(f"{deployment.base_url}/api/deliveries/{row}", timeout=30)
        assert stored.status_code == 200, stored.text
        assert (stored.json()["id"], stored.json()["messageId"]) == (row, message_id)
        if deployment.proxy == "nginx":
            # Logged, but without the secret in the path, as the dashboard logs it.
            logged = wait_until(
                lambda: (
                    "POST /webhooks/<token> " in deployment.access_log() and deployment.access_log()
                ),
                message="the webhook in nginx's access log",
            )
            assert TOKEN not in logged

        huge = session.post(
            f"{deployment.base_url}/webhooks/{TOKEN}",
            data=b"x" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        # nginx answers 413 itself. Caddy 2.6 (Debian bookworm's) stops reading at the
        # limit but, buffering, passes the cut body on, and answers 502 when that fails;
        # either way the body never reaches the dashboard whole.
        assert huge.status_code in ((413,) if deployment.proxy == "nginx" else (413, 502))


def login_attempts(deployment: Deployment) -> list[tuple[str, str]]:
    """(address, username) of every sign-in attempt the server counts."""
    return query(deployment.server.data_dir, "SELECT address, username FROM login_attempts")


def test_throttling_counts_the_clients_address(deployment):
    with browser(deployment, THROTTLED_CLIENT) as guesser:
        for _ in range(10):
            wrong = sign_in(deployment, guesser, "mallory", "not the password", headers=SPOOFED)
            assert wrong.status_code == 200, wrong.text
            assert "Wrong username or password." in wrong.text
        assert set(login_attempts(deployment)) == {(THROTTLED_CLIENT, "mallory")}
        # That address is throttled, whatever the username...
        refused = sign_in(deployment, guesser, "trudy", "not the password")
        assert refused.status_code == 429
    # ...while another address, behind the very same proxy, is not.
    with browser(deployment, OTHER_CLIENT) as other:
        answer = sign_in(deployment, other, "trudy", "not the password")
        assert answer.status_code == 200
    assert (OTHER_CLIENT, "trudy") in login_attempts(deployment)


def slow_client(deployment: Deployment, context: ssl.SSLContext, stop_in_body: bool):
    """A TLS connection that sends part of a webhook request and then holds it open."""
    raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=30)
    connection = context.wrap_socket(raw, server_hostname=HOST)
    head = (
        f"POST /webhooks/{TOKEN} HTTP/1.1\r\n"
        f"Host: {HOST}:{deployment.port}\r\n"
        "Content-Type: application/json\r\n"
    )
    if stop_in_body:
        connection.sendall(f'{head}Content-Length: 5000\r\n\r\n{{"type": '.encode())
    else:
        connection.sendall(head.encode())  # stops in the middle of its headers
    return connection


def test_slow_clients_do_not_stop_webhooks(deployment):
    context = ssl.create_default_context(cafile=str(deployment.cert))
    held: list[ssl.SSLSocket] = []
    stop = threading.Event()

    def trickle():
        # Half of those stuck in their body send one more byte every second.
        while not stop.wait(1.0):
            for connection in held[: SLOW_CLIENTS // 2 : 2]:
                with contextlib.suppress(OSError):
                    connection.sendall(b" ")

    trickler = threading.Thread(target=trickle, daemon=True)
    try:
        for index in range(SLOW_CLIENTS):
            held.append(slow_client(deployment, context, stop_in_body=index < SLOW_CLIENTS // 2))
        trickler.start()
        started = time.monotonic()
        with browser(deployment) as session, ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post_webhook(deployment, session), range(20)))
            elapsed = time.monotonic() - started
            rows = [stored_id(answer) for answer in answers]
            assert len(set(rows)) == 20
            assert elapsed < 20, (
                f"20 webhooks took {elapsed:.1f} s behind {SLOW_CLIENTS} slow clients"
            )
            assert sign_in(deployment, session).status_code == 302
            for row in rows:
                found = session.get(f"{deployment.base_url}/api/deliveries/{row}", timeout=30)
                assert found.status_code == 200, found.text
    finally:
        stop.set()
        if trickler.is_alive():
            trickler.join(timeout=10)
        for connection in held:
            with contextlib.suppress(OSError):
                connection.close()
