"""The admins' page of refused webhook requests, and the download of a kept body."""

import html
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from dashboard import rejections
from dashboard.extensions import db
from dashboard.models import RejectedRequest, utcnow
from dashboard.views.refused import PAGE_SIZE, PREVIEW_CHARACTERS

from .support import english_client, signed_in_client

ROW = re.compile(r'<tr id="refused-(\d+)">')


@pytest.fixture
def admin(app):
    return signed_in_client(app, "ana", "admin")


def keep(*bodies: bytes, status: int = 400, reason: str = "No type.", content_type=None) -> None:
    with db.writing() as session:
        for body in bodies:
            rejections.record(session, status, reason, content_type, body, keep=65536)


def row_ids(page: str) -> list[int]:
    return [int(found) for found in ROW.findall(page)]


def test_a_refused_post_shows_why_with_its_secret_replaced(app, admin):
    token = app.config["WEBHOOK_TOKEN"]
    body = f'{{"type": "DeliveryCallback", "echo": "{token}"'
    posted = admin.post(f"/webhooks/{token}", data=body, content_type="application/json")
    assert posted.status_code == 400
    page = admin.get("/refused")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert posted.json["error"] in text
    assert '{"type": "DeliveryCallback", "echo": "<secret>"' in text
    assert "application/json" in text
    assert token not in text
    assert '<a href="/refused" aria-current="page">Refused</a>' in page.text


def test_newest_first_a_page_at_a_time(app, admin):
    keep(*(f'{{"n": {n}}}'.encode() for n in range(PAGE_SIZE + 3)))
    first = admin.get("/refused").text
    ids = row_ids(first)
    assert len(ids) == PAGE_SIZE and ids == sorted(ids, reverse=True)
    older = re.search(r'<a rel="next" href="/refused\?before=(\d+)">', first)
    assert older is not None and int(older[1]) == ids[-1]
    second = admin.get(f"/refused?before={older[1]}").text
    assert row_ids(second) == [3, 2, 1]
    assert 'rel="next"' not in second and 'rel="first" href="/refused"' in second


@pytest.mark.parametrize("before", ["abc", "-1", "1.5", "99999999999", "١٢"])
def test_a_bad_cursor_is_a_400_that_says_so(admin, before):
    page = admin.get("/refused", query_string={"before": before})
    assert page.status_code == 400
    assert 'role="alert"' in page.text
    assert "must be the number of a refused request" in html.unescape(page.text)


def test_bodies_show_their_start_and_download_whole_and_exact(app, admin):
    long_body = b'{"a": "' + b"x" * (PREVIEW_CHARACTERS * 2) + b'"}'
    odd = b"\xff\xfe\x00<script>alert(1)</script>"
    keep(long_body, odd, b"", content_type="text/plain; charset=latin-1")
    page = admin.get("/refused").text
    assert "x" * (PREVIEW_CHARACTERS - 7) in page and "x" * PREVIEW_CHARACTERS not in page
    assert f"Download the {len(long_body)} bytes kept" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "Not kept: the request was refused before its body was read." in page
    newest, middle, oldest = row_ids(page)
    download = admin.get(f"/refused/{middle}/body")
    assert download.status_code == 200
    assert download.data == odd
    assert download.mimetype == "application/octet-stream"
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="refused-{middle}.body"'
    )
    assert admin.get(f"/refused/{oldest}/body").data == long_body
    assert admin.get(f"/refused/{newest + 1}/body").status_code == 404


def test_none_refused_says_so(admin):
    assert "No webhook request has been refused." in admin.get("/refused").text


def test_only_admins_see_the_page_and_its_link(app):
    keep(b"{}")
    viewer = signed_in_client(app, "vera", "viewer")
    assert viewer.get("/refused").status_code == 403
    assert viewer.get("/refused/1/body").status_code == 403
    assert 'href="/refused"' not in viewer.get("/").text
    guest = english_client(app)
    assert guest.get("/refused").status_code == 302
    assert guest.get("/refused/1/body").status_code == 302


def test_the_page_is_in_portuguese(app, admin):
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    keep(b"{}")
    page = admin.get("/refused").text
    assert "Requisições de webhook recusadas" in page
    assert ">Recusadas</a>" in page and "Baixar os bytes exatos" in page


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=3000), content_type=st.none() | st.text(max_size=300))
def test_any_kept_body_renders_and_downloads_as_it_was_kept(app, admin, body, content_type):
    content_type = content_type and content_type.replace("\x00", "")  # no header holds NUL
    keep(body, content_type=content_type)
    page = admin.get("/refused")
    assert page.status_code == 200
    newest = row_ids(page.text)[0]
    assert admin.get(f"/refused/{newest}/body").data == body


def test_the_settings_page_tells_of_the_days_refusals_and_links_to_them(app, admin):
    assert "data-refused-recently" not in admin.get("/settings").text
    keep(b"{}", b"[]")
    keep(b"old")
    with db.writing() as session:
        oldest = min(session.scalars(select(RejectedRequest.id)))
        session.execute(
            update(RejectedRequest)
            .where(RejectedRequest.id == oldest)
            .values(received_at=utcnow() - timedelta(hours=25))
        )
    page = html.unescape(admin.get("/settings").text)
    assert "2 webhook requests were refused in the last 24 hours" in page
    assert '<a href="/refused">See why</a>' in page
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pt-BR"
    assert "2 requisições de webhook foram recusadas" in admin.get("/settings").text
