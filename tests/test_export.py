"""CSV export of a search: same matches as the search, masked phones, safe cells, streamed."""

import csv
import io
import re

import pytest
from sqlalchemy import text

from dashboard import csv_export, deliveries, search_params
from dashboard.extensions import db
from dashboard.views import export

from .support import FAILED, SEED, STATUS, signed_in_client, store_all

HEADER = (
    "id,receivedAt,type,instanceId,phone,messageId,zaapId,momment,status,error,errorCode,"
    "isGroup,participant,receiveCount"
)


@pytest.fixture
def signed_in(any_db_app):
    """A viewer's test client on SQLite and on PostgreSQL."""
    return signed_in_client(any_db_app)


def callback(n: int, phone: str, **extra) -> dict:
    return {**SEED, "messageId": f"M{n}", "zaapId": f"Z{n}", "phone": phone, **extra}


def rows_of(response) -> list[dict]:
    body = response.get_data(as_text=True)
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:], newline="")))


def test_header_bom_type_and_file_name(signed_in):
    store_all([SEED])
    response = signed_in.get("/search/export.csv")
    assert response.status_code == 200
    assert response.content_type == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="deliveries-\d{8}T\d{6}Z\.csv"',
        response.headers["Content-Disposition"],
    )
    assert response.headers["Cache-Control"] == "no-store"
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n")


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"phone": "(44) 9 9999-9999"},
        {"phone": "9999-9999", "failed": "1"},
        {"type": "MessageStatusCallback"},
        {"instance": "other"},
        {"phone": "8888-7777"},
    ],
)
def test_the_export_holds_exactly_the_matches_of_the_search(signed_in, args):
    store_all(
        [
            callback(1, "5544999999999"),
            callback(2, "554499999999", error="Phone number does not exist"),
            callback(3, "5511988887777"),
            {**STATUS, "instanceId": "other"},
            {**STATUS, "phone": "120363019502650977-group", "participant": "5544999999999"},
        ]
    )
    filters = search_params.parse(args).filters
    with db.reading() as session:
        expected = [row.id for row in deliveries.search(session, filters, limit=500).items]
    response = signed_in.get("/search/export.csv", query_string=args)
    assert response.status_code == 200
    assert [int(row["id"]) for row in rows_of(response)] == expected


def test_page_parameters_are_ignored(signed_in):
    ids = [row.id for row in store_all([callback(n, "5544999999999") for n in range(5)])]
    response = signed_in.get(
        "/search/export.csv", query_string={"limit": "1", "before": str(ids[2]), "after": "x"}
    )
    assert response.status_code == 200
    assert [int(row["id"]) for row in rows_of(response)] == ids[::-1]


def test_phones_are_masked_by_default_and_plain_with_mask_0(signed_in):
    store_all([{**STATUS, "phone": "120363019502650977-group", "participant": "5544999999999"}])
    store_all([callback(2, "5544988887777")])
    masked = rows_of(signed_in.get("/search/export.csv"))
    assert [(row["phone"], row["participant"]) for row in masked] == [
        ("55 44 9****-7777", ""),
        ("120363019502650977-group", "55 44 9****-9999"),
    ]
    for off in ("0", "false", "no", "OFF"):
        plain = rows_of(signed_in.get("/search/export.csv", query_string={"mask": off}))
        assert [(row["phone"], row["participant"]) for row in plain] == [
            ("5544988887777", ""),
            ("120363019502650977-group", "5544999999999"),
        ]
    # The search page's form sends its checkbox before a hidden 0: the first value wins.
    both = rows_of(signed_in.get("/search/export.csv?mask=1&mask=0"))
    assert both[0]["phone"] == "55 44 9****-7777"


@pytest.mark.parametrize("formula", ["=1+1", "+5544999999999", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_values_a_spreadsheet_would_run_are_neutralised(signed_in, formula):
    store_all([callback(1, formula, error=formula, instanceId=formula, errorCode=formula)])
    store_all([{**STATUS, "status": formula, "isGroup": True, "participant": formula}])
    status, sent = rows_of(signed_in.get("/search/export.csv", query_string={"mask": "0"}))
    for column in ("phone", "error", "instanceId", "errorCode"):
        assert sent[column] == "'" + formula, column
    for column in ("status", "participant"):
        assert status[column] == "'" + formula, column


def test_quotes_commas_newlines_and_accents_survive(signed_in):
    error = 'Número "inválido", tente\nde novo'
    store_all([callback(1, "5544999999999", error=error)])
    (row,) = rows_of(signed_in.get("/search/export.csv"))
    assert row["error"] == error
    assert row["isGroup"] == ""
    assert row["momment"] == ""
    assert row["receiveCount"] == "1"
    assert row["receivedAt"].endswith("Z")


def test_failed_callbacks_keep_their_fields(signed_in):
    (stored,) = store_all([FAILED])
    (row,) = rows_of(signed_in.get("/search/export.csv", query_string={"failed": "1"}))
    assert row["id"] == str(stored.id)
    assert row["error"] == "Phone number does not exist"
    assert row["momment"] == "1777494091684"
    assert row["type"] == "DeliveryCallback"


def test_a_large_export_is_streamed_in_batches_without_an_open_transaction(signed_in):
    total = 2 * export.BATCH + 1
    store_all([callback(n, "5544999999999") for n in range(total)])
    response = signed_in.get("/search/export.csv")
    assert response.is_streamed
    chunks = iter(response.response)
    assert next(chunks).decode().startswith("\ufeffid,")
    first = next(chunks).decode()
    assert first.count("\r\n") == export.BATCH
    # Half-way through the download no read transaction is left open.
    assert not read_transaction_open()
    rest = [chunk.decode() for chunk in chunks]
    assert [chunk.count("\r\n") for chunk in rest] == [export.BATCH, 1]


def read_transaction_open() -> bool:
    """Whether any connection of this test's database sits in an open transaction."""
    if db.is_sqlite:
        # A checkpoint that cannot reset the log is blocked by some reader's snapshot.
        with db.engine.connect() as connection:
            busy, _log, _done = connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
            return busy != 0
    with db.engine.connect() as connection:
        return bool(
            connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        )


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"phone": "abc"}, "phone"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-25", "until": "2026-11-24"}, "until"),
        ({"failed": "maybe"}, "failed"),
        ({"mask": "maybe"}, "mask"),
        ({"type": "a\x00b"}, "type"),
    ],
)
def test_bad_parameters_get_a_400_page_naming_the_parameter(signed_in, query, parameter):
    response = signed_in.get("/search/export.csv", query_string=query)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    alert = re.search(r'role="alert">(.*?)</section>', page, re.S).group(1)
    assert f"{parameter}: " in alert


def test_signed_out_is_sent_to_the_login_page(client):
    response = client.get("/search/export.csv?phone=9999")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_viewer_can_export(viewer_client):
    store_all([SEED])
    response = viewer_client.get("/search/export.csv")
    assert response.status_code == 200
    assert len(rows_of(response)) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("", ""), ("55 44", "55 44"), ("a=b", "a=b"), ("-", "'-")],
)
def test_neutralise(value, expected):
    assert csv_export.neutralise(value) == expected


def test_mask_parameter():
    def mask(args):
        return search_params.flag(args, "mask", default=True)

    assert mask({}) is True
    assert mask({"mask": " Yes "}) is True
    assert mask({"mask": "off"}) is False
    with pytest.raises(search_params.BadParameter):
        mask({"mask": "2"})
