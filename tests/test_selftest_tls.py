""" "Send test callback" end to end over real TLS, against a gunicorn on 127.0.0.1 only."""

import datetime
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from dashboard import create_app
from dashboard.extensions import db
from dashboard.models import Delivery, SettingsChange

from .support import (
    TOKEN,
    Server,
    child_env,
    create_user_with_cli,
    csrf_token,
    english_client,
    free_port,
    sign_in,
    stop_server,
    wait_until_healthy,
)

pytestmark = pytest.mark.server

INSTANCE_ID = "3C9E1A2B4D5F60718293A4B5C6D7E8F9"
INSTANCE_TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2"
ADMIN = "ana"
ADMIN_PASSWORD = "ana's long password"
STORED = re.compile(r"The test callback arrived and was stored as #(\d+)\.")
FLASH = re.compile(r'<div class="flash flash-(\w+)" role="(\w+)">([^<]*)</div>')
# Variables through which requests could trust another CA or send 127.0.0.1 to a proxy.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


def write_self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A key and a self-signed certificate for the IP address 127.0.0.1, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path = directory / "key.pem"
    cert_path = directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def start_https_server(data_dir: Path, cert: Path, key: Path) -> Server:
    """Gunicorn serving ``create_app()`` over https on 127.0.0.1; waits for /healthz."""
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / "gunicorn.log"
    # On the database of this run, as the in-process app on the same data dir.
    environment = child_env(data_dir, DASHBOARD_WEBHOOK_TOKEN=TOKEN)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
        "--workers",
        "1",
        "--threads",
        "4",
        "--no-control-socket",
        "dashboard:create_app()",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=data_dir.parent,  # the factory is imported from the package, not the checkout
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"https://127.0.0.1:{port}", data_dir, log_path)
    wait_until_healthy(server, verify=str(cert))
    return server


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """The certificate files and a running https server with one admin account."""
    directory = tmp_path_factory.mktemp("tls")
    key, cert = write_self_signed_certificate(directory)
    server = start_https_server(directory / "data", cert, key)
    try:
        create_user_with_cli(server.data_dir, ADMIN, ADMIN_PASSWORD, "admin")
        yield server, cert
    finally:
        stop_server(server)


@pytest.fixture
def admin(tls, monkeypatch):
    """A test client of an in-process app on the server's database, signed in as admin."""
    server, _cert = tls
    for name in (*CA_VARIABLES, *PROXY_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    app = create_app({"DATA_DIR": str(server.data_dir), "WEBHOOK_TOKEN": TOKEN, "TESTING": True})
    client = english_client(app)
    assert sign_in(client, ADMIN, ADMIN_PASSWORD).status_code == 302
    save = client.post(
        "/settings",
        data={
            "csrf_token": csrf_token(client.get("/settings").get_data(as_text=True)),
            "action": "save",
            "instance_id": INSTANCE_ID,
            "instance_token": INSTANCE_TOKEN,
            "public_url": server.base_url,
        },
        follow_redirects=True,
    )
    assert "Settings saved." in save.get_data(as_text=True)
    yield client
    db.engine.dispose()


def send_test_callback(client) -> tuple[str, str, str]:
    """Press "Send test callback"; return the one flash message: category, role, text."""
    token = csrf_token(client.get("/settings").get_data(as_text=True))
    response = client.post("/settings/test", data={"csrf_token": token}, follow_redirects=True)
    assert response.status_code == 200
    flashes = FLASH.findall(response.get_data(as_text=True))
    assert len(flashes) == 1, flashes
    return flashes[0]


def last_test_change() -> SettingsChange:
    with db.reading() as session:
        query = select(SettingsChange).where(SettingsChange.action == "test")
        return session.scalars(query.order_by(SettingsChange.id.desc())).first()


def test_the_test_callback_arrives_over_https(tls, admin, monkeypatch):
    _server, cert = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))

    category, role, message = send_test_callback(admin)

    assert (category, role) == ("success", "status"), message
    found = STORED.fullmatch(message)
    assert found, message
    stored_id = int(found.group(1))
    with db.reading() as session:
        delivery = session.get(Delivery, stored_id)
        assert delivery is not None
        assert delivery.type == "DeliveryCallback"
        assert delivery.message_id.startswith("TEST")
        assert delivery.instance_id == INSTANCE_ID
    change = last_test_change()
    assert change.succeeded is True
    assert change.username == ADMIN
    assert change.outcome == message


def test_an_untrusted_certificate_is_explained(tls, admin, monkeypatch):
    # Without the bundle, requests trusts only its usual CAs, and none signed this certificate.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    category, role, message = send_test_callback(admin)

    assert (category, role) == ("error", "alert")
    assert "has no valid https certificate" in message
    change = last_test_change()
    assert change.succeeded is False
    assert "has no valid https certificate" in change.outcome
