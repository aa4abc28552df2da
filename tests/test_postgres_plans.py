"""On PostgreSQL, the pages about messages read the rows they show, not the whole table.

Each statement a page runs is explained with ``EXPLAIN ANALYZE`` on a table of thousands
of callbacks, with sequential scans discouraged: a lookup that cannot use an index (an OR
of a column and a subquery, say) reads every stored callback, and would make every page
slower as the table grows."""

import json

import pytest
from sqlalchemy import event, func, select

from dashboard.extensions import db
from dashboard.models import Delivery, Message

from .support import signed_in_client, store_all
from .test_messages import sent, status

OTHER_MESSAGES = 2000
# More than one page of the API's 50: the page's per-message lookups all run.
SEARCHED_MESSAGES = 60
SEARCHED_PHONE = "5511988887777"
# A page may read a few rows for each message it shows; a tenth of the table is far more.
MOST_ROWS_READ = (OTHER_MESSAGES + SEARCHED_MESSAGES) * 2 // 10


@pytest.fixture
def seeded(pg_app):
    """Thousands of callbacks (a send and a status per message), then fresh statistics."""
    payloads = []
    for n in range(OTHER_MESSAGES):
        payloads += [sent(f"O{n}", phone=f"55119{n:08d}"), status("READ", 5, f"O{n}")]
    for n in range(SEARCHED_MESSAGES):
        payloads += [sent(f"S{n}", phone=SEARCHED_PHONE), status("READ", 5, f"S{n}")]
    for start in range(0, len(payloads), 500):
        store_all(payloads[start : start + 500])
    with db.engine.connect() as connection:
        # These tables only: the suite's other tests may keep schemas of their own in the
        # same database, and a plain ANALYZE would lock every table of every one of them.
        connection.exec_driver_sql("ANALYZE deliveries, status_message_ids, messages, phone_lids")
    return pg_app


def statements_of(client, path: str) -> list[tuple[str, object]]:
    """The SELECT statements, with their parameters, that answering ``path`` runs."""
    ran = []

    def note(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            ran.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        response = client.get(path)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert response.status_code == 200, response.get_data(as_text=True)
    return ran


def deliveries_rows_read(plan: dict) -> int:
    """How many rows the plan's scans of ``deliveries`` looked at, matched or not."""
    read = 0
    if plan.get("Relation Name") == "deliveries":
        loops = plan.get("Actual Loops", 1)
        read += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    for child in plan.get("Plans", []):
        read += deliveries_rows_read(child)
    return read


def most_rows_read(statements: list[tuple[str, object]]) -> tuple[int, str]:
    """The most rows of ``deliveries`` one of ``statements`` read, and that statement."""
    worst = (0, "")
    with db.engine.connect() as connection:
        cursor = connection.connection.cursor()
        # On a table this small a scan of it all can cost less than the index lookups; the
        # planner still takes a scan whenever no index can answer, which is what is looked for.
        cursor.execute("SET enable_seqscan = off")
        for statement, parameters in statements:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
            explained = cursor.fetchone()[0]
            plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]
            worst = max(worst, (deliveries_rows_read(plan["Plan"]), statement))
    return worst


def page_paths() -> list[str]:
    with db.reading() as session:
        searched = session.scalar(select(func.max(Message.id)).where(Message.message_id.like("S%")))
        callback = session.scalar(
            select(func.max(Delivery.id)).where(Delivery.message_id.like("S%"))
        )
    return [
        f"/messages/{searched}",
        f"/api/messages/{searched}",
        f"/deliveries/{callback}",
        f"/api/deliveries/{callback}",
        f"/api/messages?phone={SEARCHED_PHONE}",
        f"/search?phone={SEARCHED_PHONE}",
    ]


def test_message_pages_read_only_the_callbacks_they_show(seeded):
    client = signed_in_client(seeded)
    for path in page_paths():
        statements = statements_of(client, path)
        assert statements, path
        read, statement = most_rows_read(statements)
        assert read <= MOST_ROWS_READ, f"{path} read {read} callbacks in:\n{statement}"
