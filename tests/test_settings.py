"""The Z-API settings page against a real local HTTP server standing in for Z-API."""

import json
import logging
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Response

from dashboard import settings
from dashboard.extensions import db, vault
from dashboard.models import SettingsChange

from .support import csrf_token, free_port, secret_forms

INSTANCE_ID = "3C9E1A2B4D5F60718293A4B5C6D7E8F9"
INSTANCE_TOKEN = "A1B2C3D4E5F6A7B8C9D0E1F2"
CLIENT_TOKEN = "F0123456789abcdefABCDEF0123456789"
PUBLIC_URL = "https://dash.example.com"
PATH = f"/instances/{INSTANCE_ID}/token/{INSTANCE_TOKEN}"


def submit(client, action="apply", **overrides):
    fields = {
        "instance_id": INSTANCE_ID,
        "instance_token": INSTANCE_TOKEN,
        "client_token": CLIENT_TOKEN,
        "public_url": PUBLIC_URL,
        **overrides,
    }
    token = csrf_token(client.get("/settings").get_data(as_text=True))
    return client.post(
        "/settings",
        data={"csrf_token": token, "action": action, **fields},
        follow_redirects=True,
    )


def post_button(client, path):
    token = csrf_token(client.get("/settings").get_data(as_text=True))
    return client.post(path, data={"csrf_token": token}, follow_redirects=True)


def webhook_url(app):
    return f"{PUBLIC_URL}/webhooks/{app.config['WEBHOOK_TOKEN']}"


def audit():
    with db.reading() as session:
        return session.scalars(select(SettingsChange).order_by(SettingsChange.id)).all()


def test_only_admins_open_settings(viewer_client):
    assert viewer_client.get("/settings").status_code == 403


def test_apply_sends_exactly_the_documented_request(app, zapi_admin, httpserver):
    httpserver.expect_oneshot_request(
        f"{PATH}/update-webhook-delivery",
        method="PUT",
        headers={"Client-Token": CLIENT_TOKEN, "Content-Type": "application/json"},
        json={"value": webhook_url(app)},
    ).respond_with_json({"value": True})
    page = submit(zapi_admin).get_data(as_text=True)
    httpserver.check_assertions()
    assert "Z-API accepted the webhook address" in page
    assert "Waiting for the first callback" in page
    assert [(c.action, c.succeeded) for c in audit()] == [("save", True), ("apply", True)]


def test_message_status_url_is_set_too_when_asked(app, zapi_admin, httpserver):
    for endpoint in ("update-webhook-delivery", "update-webhook-message-status"):
        httpserver.expect_oneshot_request(
            f"{PATH}/{endpoint}", method="PUT", json={"value": webhook_url(app)}
        ).respond_with_json({"value": True})
    submit(zapi_admin, set_message_status="y")
    httpserver.check_assertions()
    assert len(httpserver.log) == 2


def test_a_refusal_is_explained_and_audited(zapi_admin, httpserver):
    httpserver.expect_request(f"{PATH}/update-webhook-delivery").respond_with_json(
        {"error": f"Client-Token {CLIENT_TOKEN} not allowed"}, status=403
    )
    page = submit(zapi_admin).get_data(as_text=True)
    assert 'class="flash flash-error" role="alert"' in page
    assert "Client-Token" in page
    assert CLIENT_TOKEN not in page
    assert audit()[-1].succeeded is False
    assert CLIENT_TOKEN not in audit()[-1].outcome


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("public_url", "http://dash.example.com", "https://"),
        ("public_url", "https://user:pw@dash.example.com", "user name or password"),
        ("public_url", "https://dash.example.com/?x=1", "? or #"),
        ("public_url", "https://", "host name"),
        ("public_url", 'https://dash.example.com/"><svg onload=alert(1)>', "no spaces, quotes"),
        ("public_url", "https://dash.example.com/a b", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/it's", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/<b>", "no spaces, quotes"),
        ("public_url", "https://dash.example.com/100%zz", "no spaces, quotes"),
        ("public_url", 'https://dash"x.example.com/', "letters, digits, dots"),
        ("public_url", "https://dash.example.com:99999", "not a valid URL"),
        ("instance_id", "not an id!", "letters and digits"),
        ("instance_token", "short", "letters and digits"),
        ("client_token", "has spaces in it 123", "letters and digits"),
    ],
)
def test_invalid_fields_send_nothing_to_zapi(zapi_admin, httpserver, field, value, message):
    page = submit(zapi_admin, **{field: value}).get_data(as_text=True)
    assert message in page
    assert 'role="alert"' in page
    assert httpserver.log == []
    assert audit() == []


def test_a_refused_address_is_shown_back_escaped(zapi_admin, httpserver):
    attack = 'https://dash.example.com/"><svg onload=alert(1)>'
    page = submit(zapi_admin, action="save", public_url=attack).get_data(as_text=True)
    assert "<svg" not in page
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;" in page
    assert audit() == []


def test_an_address_with_a_plain_path_is_kept(zapi_admin):
    address = "https://dash.example.com/zapi/dash-1_~.x%2A:@!$&()*+,;="
    page = submit(zapi_admin, action="save", public_url=address).get_data(as_text=True)
    assert "Settings saved." in page
    with db.reading() as session:
        assert settings.load(session).public_url == address


def test_secrets_are_masked_sealed_and_kept_when_left_empty(app, zapi_admin, httpserver):
    httpserver.expect_request(f"{PATH}/update-webhook-delivery").respond_with_json({"value": True})
    submit(zapi_admin, action="save")
    page = zapi_admin.get("/settings").get_data(as_text=True)
    assert "••••E1F2" in page and "••••6789" in page
    assert INSTANCE_TOKEN not in page and CLIENT_TOKEN not in page
    assert app.config["WEBHOOK_TOKEN"] not in page
    # Empty token fields keep what is stored: apply still sends the right path and header.
    submit(zapi_admin, instance_token="", client_token="")
    assert httpserver.log[-1][0].headers["Client-Token"] == CLIENT_TOKEN
    assert httpserver.log[-1][0].path == f"{PATH}/update-webhook-delivery"


def test_a_first_save_needs_the_instance_token(zapi_admin, httpserver):
    page = submit(zapi_admin, action="save", instance_token="").get_data(as_text=True)
    assert "Paste the instance token" in page
    assert audit() == []


def test_check_compares_the_configured_address_and_connection(app, zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    me = httpserver.expect_request(f"{PATH}/me", method="GET")
    status = httpserver.expect_request(f"{PATH}/status", method="GET")
    me.respond_with_json({"deliveryCallbackUrl": webhook_url(app), "token": INSTANCE_TOKEN})
    status.respond_with_json({"connected": True, "smartphoneConnected": True})
    page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    assert "Z-API sends delivery callbacks here and the instance is connected." in page
    assert INSTANCE_TOKEN not in page


def test_check_explains_a_mismatch_and_a_disconnected_instance(zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    httpserver.expect_request(f"{PATH}/me").respond_with_json(
        {"deliveryCallbackUrl": "https://elsewhere.example.com/hook"}
    )
    httpserver.expect_request(f"{PATH}/status").respond_with_json({"connected": False})
    page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    assert "another address" in page
    assert "not connected to WhatsApp" in page


def test_the_webhook_url_is_revealed_only_on_request(app, zapi_admin):
    submit(zapi_admin, action="save")
    token = csrf_token(zapi_admin.get("/settings").get_data(as_text=True))
    assert zapi_admin.post("/settings/webhook-url").status_code == 400  # no CSRF token
    revealed = zapi_admin.post("/settings/webhook-url", headers={"X-CSRFToken": token})
    assert revealed.json == {"url": webhook_url(app)}


def test_test_callback_to_an_unreachable_address_says_so(zapi_admin):
    submit(zapi_admin, action="save", public_url=f"https://127.0.0.1:{free_port()}")
    page = post_button(zapi_admin, "/settings/test").get_data(as_text=True)
    assert "cannot be reached" in page
    assert audit()[-1].action == "test" and audit()[-1].succeeded is False


def test_no_secret_in_logs_pages_json_or_database_files(app, zapi_admin, httpserver, caplog):
    caplog.set_level(logging.DEBUG)
    httpserver.expect_request(f"{PATH}/update-webhook-delivery").respond_with_json(
        {"error": "null not allowed"}, status=400
    )
    httpserver.expect_request(f"{PATH}/me").respond_with_json({"token": INSTANCE_TOKEN})
    httpserver.expect_request(f"{PATH}/status").respond_with_json({"connected": True})
    served = [submit(zapi_admin).get_data(as_text=True)]
    served.append(post_button(zapi_admin, "/settings/check").get_data(as_text=True))
    served.append(zapi_admin.get("/settings").get_data(as_text=True))
    served.append(json.dumps(zapi_admin.get("/api/status").json))
    database = Path(app.config["DATA_DIR"]) / "dashboard.sqlite3"
    stored = b"".join(
        path.read_bytes() for path in database.parent.glob("dashboard.sqlite3*") if path.is_file()
    )
    # "werkzeug" records here are the fake Z-API server's own request log, not ours.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert "update-webhook-delivery" in logged
    for secret in (INSTANCE_TOKEN, CLIENT_TOKEN, app.config["WEBHOOK_TOKEN"]):
        for form in secret_forms(secret):
            assert form not in logged
            assert all(form not in text for text in served)
            assert form.encode() not in stored
    assert stored


def test_check_before_saving_asks_for_the_instance_first(zapi_admin, httpserver):
    page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    assert "Save the instance ID and token first." in page
    assert httpserver.log == []


def test_tokens_sealed_with_another_key_are_asked_for_again(app, zapi_admin, httpserver):
    submit(zapi_admin, action="save")
    vault.init(Fernet.generate_key().decode())  # as if the data dir's key were lost
    try:
        page = post_button(zapi_admin, "/settings/check").get_data(as_text=True)
    finally:
        vault.init(app.config["SETTINGS_KEY"])
    assert "cannot be decrypted" in page
    assert httpserver.log == []


def test_a_hung_zapi_times_out_and_the_page_says_so(app, zapi_admin, httpserver):
    app.config["ZAPI_TIMEOUT_SECONDS"] = 0.3
    released = threading.Event()

    def hang(request):
        released.wait(5)  # far longer than the timeout; released at the end of the test
        return Response("{}", content_type="application/json")

    httpserver.expect_request(f"{PATH}/update-webhook-delivery").respond_with_handler(hang)
    try:
        page = submit(zapi_admin).get_data(as_text=True)
    finally:
        released.set()
    assert "did not answer within 1 seconds (3 tries)" in page
    assert audit()[-1].succeeded is False


def test_a_redirect_is_not_followed(zapi_admin, httpserver):
    elsewhere = HTTPServer(host="127.0.0.1", port=free_port())
    elsewhere.start()
    try:
        httpserver.expect_request(f"{PATH}/update-webhook-delivery").respond_with_data(
            "", status=302, headers={"Location": elsewhere.url_for("/steal")}
        )
        page = submit(zapi_admin).get_data(as_text=True)
        assert "redirect" in page
        assert elsewhere.log == []
    finally:
        elsewhere.stop()
