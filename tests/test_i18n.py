"""Languages: complete catalogs, matching placeholders, and the language each visitor gets."""

import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from dashboard.accounts import users as accounts
from dashboard.extensions import db
from dashboard.i18n import LANGUAGES, TRANSLATIONS_DIR

ROOT = Path(__file__).resolve().parent.parent
SOURCE_LANGUAGE = "en"  # msgids are English, so English needs no catalog
TRANSLATED = [language for language in LANGUAGES if language != SOURCE_LANGUAGE]
# The same keywords as babel.cfg, passed here too so that no Babel version can miss one.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
# A printf conversion as Python's % operator reads it: %(name)s, %d, %.2f, %%...
CONVERSION = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
CSRF_FIELD = re.compile(r'<input[^>]*name="csrf_token"[^>]*value="([^"]+)"')
PASSWORD = "a long enough password"


@cache
def extracted() -> dict[tuple[str | None, str], set[str]]:
    """Every (msgctxt, msgid) pybabel extracts with babel.cfg, mapped to the files it is in."""
    with open(ROOT / "babel.cfg", encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config, "babel.cfg")
    found: dict[str, set[str]] = {}
    for filename, _line, message, _comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault((context, msgid), set()).add(Path(filename).as_posix())
    return found


def po_path(language: str) -> Path:
    return TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"


@cache
def catalog(language: str) -> Catalog:
    with open(po_path(language), "rb") as po:
        return read_po(po, locale=language)


def strings(message) -> tuple[str, ...]:
    """A message's msgstr, or all its plural forms."""
    return message.string if isinstance(message.string, tuple) else (message.string,)


def conversions(text: str) -> Counter:
    return Counter(found for found in CONVERSION.findall(text) if found != "%%")


def test_extraction_reads_templates_lazy_and_deferred_strings():
    # Guards the completeness test below: an extraction that finds nothing proves nothing.
    files = set().union(*extracted().values())
    assert any(name.startswith("templates/") for name in files)
    for module in ("dashboard/navigation.py", "dashboard/forms.py", "dashboard/payloads.py"):
        assert module in files, f"no message extracted from {module} (_l / N_ keywords?)"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_string_has_a_finished_translation(language):
    translations = catalog(language)
    assert not translations.fuzzy, f"{po_path(language)}: the header is fuzzy; compile skips it"
    problems = []
    for (context, msgid), files in sorted(extracted().items(), key=lambda item: str(item[0])):
        message = translations.get(msgid, context)
        where = ", ".join(sorted(files)) + (f", msgctxt {context!r}" if context else "")
        if message is None:
            problems.append(f"missing: {msgid!r} ({where})")
        elif message.fuzzy:
            problems.append(f"fuzzy: {msgid!r} ({where})")
        elif not all(strings(message)):
            problems.append(f"untranslated: {msgid!r} ({where})")
    assert not problems, (
        f"{po_path(language)} is incomplete; run the pybabel commands in docs/languages.md "
        "(Languages) and translate:\n" + "\n".join(problems)
    )


def frozen(value):
    """Plural forms come back as lists from a .mo and as tuples from a .po."""
    return tuple(value) if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("language", TRANSLATED)
def test_compiled_catalog_matches_the_po_file(language):
    mo_path = po_path(language).with_suffix(".mo")
    assert mo_path.is_file(), f"{mo_path} is missing: run pybabel compile -d dashboard/translations"
    with open(mo_path, "rb") as mo:
        compiled = read_mo(mo)
    # What `pybabel compile` keeps: translated, non-fuzzy messages.
    expected = {
        (message.context, frozen(message.id)): frozen(message.string)
        for message in catalog(language)
        if message.id and all(strings(message)) and not message.fuzzy
    }
    actual = {
        (message.context, frozen(message.id)): frozen(message.string)
        for message in compiled
        if message.id
    }
    assert actual == expected, f"{mo_path} is stale: run pybabel compile -d dashboard/translations"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_the_placeholders(language):
    problems = []
    for message in catalog(language):
        if not message.id:
            continue
        msgids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = conversions(msgids[0])
        for text in strings(message):
            if not text:
                continue
            if conversions(text) != wanted:
                problems.append(f"{msgids[0]!r} -> {text!r}")
            # Templates always apply %, so a lone % would break the page.
            if "%" in CONVERSION.sub("", text):
                problems.append(f"stray %: {text!r}")
    assert not problems, "placeholders differ from the msgid:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("accept_language", "lang", "heading", "label"),
    [
        (None, "pt-BR", "Entrar", "Usuário"),
        ("pt-BR", "pt-BR", "Entrar", "Usuário"),
        ("pt", "pt-BR", "Entrar", "Usuário"),
        ("de-DE,de;q=0.9", "pt-BR", "Entrar", "Usuário"),
        ("en-US,en;q=0.9", "en", "Sign in", "Username"),
    ],
)
def test_login_page_language_follows_the_browser(app, accept_language, lang, heading, label):
    client = app.test_client()
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get("/login", headers=headers)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert f"<h1>{heading}</h1>" in page
    assert f">{label}</label>" in page
    other = "Sign in" if heading == "Entrar" else "Entrar"
    assert f"<h1>{other}</h1>" not in page


def test_json_errors_are_translated(app):
    client = app.test_client()
    path = f"/webhooks/{app.config['WEBHOOK_TOKEN']}"
    portuguese = client.post(path, data="{}", content_type="text/plain")
    english = client.post(
        path, data="{}", content_type="text/plain", headers={"Accept-Language": "en"}
    )
    assert portuguese.status_code == english.status_code == 415
    msgid = "Content-Type must be application/json, not %(received)s."
    values = {"received": "text/plain"}
    assert english.json["error"] == msgid % values
    assert portuguese.json["error"] == catalog("pt_BR")[msgid].string % values
    assert portuguese.json["error"] != english.json["error"]


def sign_in(client, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = CSRF_FIELD.search(page)
    assert token, "the login page has no CSRF token"
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token[1]}
    )
    assert response.status_code == 302, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("saved", "browser", "lang", "heading"),
    [
        ("en", "pt-BR", "en", "My account"),
        ("pt_BR", "en", "pt-BR", "Minha conta"),
        (None, "en", "en", "My account"),
        (None, "pt-BR", "pt-BR", "Minha conta"),
    ],
)
def test_saved_language_wins_over_the_browser(app, saved, browser, lang, heading):
    with db.writing() as session:
        user = accounts.create_user(session, "lia", PASSWORD, "viewer")
        user.language = saved
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = browser
    sign_in(client, "lia")
    response = client.get("/account")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'<html lang="{lang}">' in page
    assert f"<h1>{heading}</h1>" in page
