"""On SQLite, what a page of messages reads does not grow with what was stored after it.

SQLite counts the virtual-machine steps of each statement it runs (its progress handler):
a lookup served by an index costs the same steps however many callbacks came later,
where a walk through them grows with their number.
"""

import pytest

from dashboard.extensions import db
from dashboard.messages import queries

from .support import store_all
from .test_messages import message, sent, status

pytestmark = pytest.mark.sqlite_only

PAGE = 50


def steps_of(read) -> int:
    """The virtual-machine steps SQLite takes for ``read(session)``, in thousands."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    with db.reading() as session:
        connection = session.connection().connection.driver_connection
        connection.set_progress_handler(count, 1000)
        try:
            read(session)
        finally:
            connection.set_progress_handler(None, 1000)
    return counted[0]


def page_cost(phone: str, later_sends: int) -> tuple[int, int]:
    """The steps of a page's callbacks and replies in one chat, ``later_sends`` more sends
    to that chat (and their statuses) having been stored after that page's messages."""
    ids = [f"{phone}-{n}" for n in range(PAGE)]
    store_all([sent(i, phone=phone) for i in ids])
    store_all([status("READ", 5, i, phone=phone) for i in ids])
    later = []
    for n in range(later_sends):
        later_id = f"{phone}-later-{n}"
        later += [sent(later_id, phone=phone), status("READ", 5, later_id, phone=phone)]
    for start in range(0, len(later), 500):
        store_all(later[start : start + 500])
    page = [message(i) for i in ids]
    return (
        steps_of(lambda session: queries.callback_ids_of(session, page)),
        steps_of(lambda session: queries.replies_of(session, page)),
    )


def test_an_older_page_costs_no_more_in_a_chat_we_kept_writing_to(app):
    with app.app_context():
        quiet = page_cost("5511977770000", 0)
        busy = page_cost("5511977771111", 2000)
    # Either page is 50 messages with a send and a status each, no reply; in the second
    # chat 4,000 more of our callbacks came after them, none of them a reply either.
    for what, quiet_steps, busy_steps in zip(("callbacks", "replies"), quiet, busy, strict=True):
        assert busy_steps <= 2 * quiet_steps + 20, (what, quiet_steps, busy_steps)
