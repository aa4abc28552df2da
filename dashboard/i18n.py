"""Languages: Portuguese (Brazil) by default, English on request."""

from flask import Flask, request
from flask_babel import Babel, format_datetime, format_decimal
from flask_login import current_user

from .paths import PACKAGE_DIR

DEFAULT_LANGUAGE = "pt_BR"
LANGUAGES = ("pt_BR", "en")
TRANSLATIONS_DIR = PACKAGE_DIR / "translations"


def select_language() -> str:
    """The user's chosen language, else the browser's best match, else Portuguese."""
    chosen = getattr(current_user, "language", None)
    if chosen in LANGUAGES:
        return chosen
    # Browsers send "pt-BR" or "pt"; offer both spellings of ours.
    offered = {"pt-BR": "pt_BR", "pt": "pt_BR", "en": "en"}
    best = request.accept_languages.best_match(offered)
    return offered.get(best, DEFAULT_LANGUAGE)


def init(app: Flask, babel: Babel) -> None:
    """Bind Flask-Babel to ``app`` with our catalogs and language choice."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS_DIR)
    babel.init_app(app, locale_selector=select_language)
    # Dates and numbers written the way the page's language writes them.
    app.jinja_env.globals.update(format_datetime=format_datetime, format_decimal=format_decimal)
