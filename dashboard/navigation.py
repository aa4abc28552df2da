"""What every page's template can use: the navigation, the language, the phone format."""

from typing import NamedTuple

from flask import Flask, current_app, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from . import phones


class NavItem(NamedTuple):
    """One link of the navigation bar."""

    endpoint: str
    label: str
    admin_only: bool


# A section appears as soon as its blueprint is registered.
SECTIONS = (
    NavItem("feed.index", _l("Live"), False),
    NavItem("search.index", _l("Search"), False),
    NavItem("settings.index", _l("Settings"), True),
    NavItem("users.index", _l("Users"), True),
    NavItem("refused.index", _l("Refused"), True),
)


class ShownItem(NamedTuple):
    """A navigation link as a template draws it."""

    endpoint: str
    label: str
    current: bool


def navigation() -> list[ShownItem]:
    """The links the signed-in user may follow, marking the current section."""
    section = (request.endpoint or "").split(".")[0]
    return [
        ShownItem(item.endpoint, str(item.label), item.endpoint.split(".")[0] == section)
        for item in SECTIONS
        if item.endpoint in current_app.view_functions
        and (current_user.is_admin or not item.admin_only)
    ]


def current_language() -> str:
    """The page's language as an HTML lang attribute (pt-BR, en)."""
    return str(get_locale()).replace("_", "-")


def init(app: Flask) -> None:
    """Make the navigation helpers and the phone format available to every template."""
    app.jinja_env.globals.update(navigation=navigation, current_language=current_language)
    app.add_template_filter(phones.display, "phone")
