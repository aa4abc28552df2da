"""Languages: Portuguese (Brazil) by default, English on request."""

from datetime import UTC, datetime

from flask import Flask, request
from flask_babel import Babel, format_datetime, format_decimal
from flask_login import current_user
from markupsafe import Markup
from werkzeug.datastructures import LanguageAccept

from . import labels
from .models import iso_utc
from .paths import PACKAGE_DIR

DEFAULT_LANGUAGE = "pt_BR"
LANGUAGES = ("pt_BR", "en")
TRANSLATIONS_DIR = PACKAGE_DIR / "translations"


# Browsers send "pt-BR" or "pt"; both spellings of ours are offered.
_OFFERED = {"pt-BR": "pt_BR", "pt": "pt_BR", "en": "en"}


def select_language() -> str:
    """The user's chosen language, else the browser's best match, else Portuguese."""
    chosen = getattr(current_user, "language", None)
    if chosen in LANGUAGES:
        return chosen
    return language_for(request.accept_languages)


def language_for(accepted: LanguageAccept) -> str:
    """Our language that best matches an ``Accept-Language``, else Portuguese."""
    return _OFFERED.get(accepted.best_match(_OFFERED), DEFAULT_LANGUAGE)


def init(app: Flask, babel: Babel) -> None:
    """Bind Flask-Babel to ``app`` with our catalogs and language choice."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_DIR)
    babel.init_app(app, locale_selector=select_language)
    # Numbers written the way the page's language writes them; times by the one filter below.
    app.jinja_env.globals.update(format_decimal=format_decimal)
    app.add_template_filter(time_element, "local_time")
    labels.init(app)


def time_element(moment: datetime, field: str | None = None) -> Markup:
    """A time as ``<time>``: UTC text static/time.js turns into the reader's local time."""
    # Stored times are UTC; one without a zone is taken as UTC too, never as server time.
    at = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # ``field`` names the element for live.js, which refills it as news arrive.
    hook = Markup(' data-field="{}"').format(field) if field else ""
    return Markup('<time datetime="{}" title="{}"{}>{}</time>').format(
        iso_utc(at), at.strftime("%Y-%m-%d %H:%M:%S UTC"), hook, format_datetime(at, "long")
    )
