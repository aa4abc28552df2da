"""CSV rows of stored callbacks, safe to open in a spreadsheet. Pure functions, no I/O."""

import csv
import io
from collections.abc import Iterable

from .deliveries import to_json
from .models import Delivery
from .phones import mask

# The JSON API's field names, so a column means the same thing in both.
COLUMNS = (
    "id",
    "receivedAt",
    "type",
    "instanceId",
    "phone",
    "messageId",
    "zaapId",
    "momment",
    "status",
    "error",
    "errorCode",
    "isGroup",
    "participant",
    "receiveCount",
)
MASKED_COLUMNS = ("phone", "participant")
# Excel reads a file without it as the local code page and garbles accented text.
BOM = "\ufeff"
# A spreadsheet runs a cell starting with these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """``value`` with a leading ``'`` if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def row(delivery: Delivery, masked: bool) -> list[str]:
    """One callback's cells, in COLUMNS order."""
    fields = to_json(delivery)
    if masked:
        for name in MASKED_COLUMNS:
            fields[name] = mask(fields[name])
    return [neutralise(_cell(fields[name])) for name in COLUMNS]


def lines(rows: Iterable[list[str]]) -> str:
    """Rows as CSV text (RFC 4180: comma, double quotes, CRLF)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def header() -> str:
    """The first line of an export, byte order mark included."""
    return BOM + lines([list(COLUMNS)])


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
