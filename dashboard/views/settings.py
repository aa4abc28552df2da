"""The admins' Z-API settings page: store, apply, check and test the webhook."""

from datetime import timedelta

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from .. import deliveries, rejections
from ..accounts.login import admin_required
from ..extensions import db, vault
from ..forms import EmptyForm, SettingsForm
from ..models import utcnow
from ..settings import selftest
from ..settings import store as settings
from ..settings import webhooks as webhook_setup
from ..settings.vault import VaultError
from ..zapi import ZapiClient, ZapiError

bp = Blueprint("settings", __name__, url_prefix="/settings")
ACTIONS = ("save", "apply")
# The refused webhook requests the page tells of: those of the last day.
REFUSALS_WINDOW = timedelta(hours=24)


@bp.route("", methods=["GET", "POST"])
@admin_required
def index():
    """Show the settings; ``action=save`` stores them, ``action=apply`` also tells Z-API."""
    with db.reading() as transaction:
        stored = settings.load(transaction)
    form = SettingsForm(obj=stored, public_url=_public_url(stored))
    if request.method == "POST":
        action = request.form.get("action")
        if action not in ACTIONS:
            abort(400)
        if form.validate_on_submit() and _has_instance_token(form, stored):
            with db.writing() as transaction:
                stored = settings.save(
                    transaction,
                    vault,
                    instance_id=form.instance_id.data.strip(),
                    instance_token=form.instance_token.data or None,
                    client_token=form.client_token.data or None,
                    public_url=form.public_url.data.strip().rstrip("/"),
                    set_chat_presence=form.set_chat_presence.data,
                )
                settings.record_change(
                    transaction, current_user.username, "save", True, _("Settings saved.")
                )
            if action == "apply":
                _apply(stored)
            else:
                flash(_("Settings saved."), "success")
            return redirect(url_for("settings.index"))
    return _page(form, stored)


@bp.post("/check")
@admin_required
def check():
    """Ask Z-API where it sends each kind of callback and whether the instance is connected."""
    with db.reading() as transaction:
        stored = settings.load(transaction)
    credentials, problem = _credentials(stored)
    if problem:
        return _report("check", False, problem)
    try:
        with _client_for(credentials) as client:
            configured = client.me()
            state = client.status()
    except ZapiError as exc:
        return _report("check", False, _(exc.message, **exc.params))
    ours = settings.webhook_url(stored.public_url, current_app.config["WEBHOOK_TOKEN"])
    found = webhook_setup.compare(configured, ours, stored.set_chat_presence)
    connected = state.get("connected") is True
    return _report("check", found.all_here and connected, _checked(found, connected))


@bp.post("/test")
@admin_required
def test_callback():
    """Send a sample callback to our public webhook URL, through the network."""
    with db.reading() as transaction:
        stored = settings.load(transaction)
    if stored is None or not stored.public_url:
        return _report("test", False, _("Save the public address first."))
    url = settings.webhook_url(stored.public_url, current_app.config["WEBHOOK_TOKEN"])
    try:
        stored_id = selftest.send(url, stored.instance_id)
    except selftest.SelfTestFailed as exc:
        return _report("test", False, _(exc.message, **exc.params))
    return _report(
        "test", True, _("The test callback arrived and was stored as #%(id)d.", id=stored_id)
    )


@bp.post("/webhook-url")
@admin_required
def reveal_webhook_url():
    """The full webhook URL, on request only, so it is not in the page's HTML."""
    with db.reading() as transaction:
        stored = settings.load(transaction)
    base = _public_url(stored)
    return jsonify(url=settings.webhook_url(base, current_app.config["WEBHOOK_TOKEN"]))


def _apply(stored):
    """Point Z-API's webhooks at us, and report what was set and what was not."""
    credentials, problem = _credentials(stored)
    if problem:
        _report("apply", False, problem)
        return
    url = settings.webhook_url(stored.public_url, current_app.config["WEBHOOK_TOKEN"])
    with _client_for(credentials) as client:
        steps = webhook_setup.apply(client, url, stored.set_chat_presence)
    # Callbacks may arrive as soon as any one URL is ours: the page starts waiting for them.
    if any(step.done and step.name != webhook_setup.NOTIFY_SENT_BY_ME for step in steps):
        with db.writing() as transaction:
            settings.mark_applied(transaction, transaction.merge(stored))
    _report("apply", all(step.done for step in steps), _applied(steps))


def _applied(steps) -> str:
    """The outcome of "Save and apply": what Z-API accepted, refused, or was not asked."""
    done = [step.name for step in steps if step.done]
    hooks = [name for name in done if name != webhook_setup.NOTIFY_SENT_BY_ME]
    if len(done) == len(steps):
        return _(
            "Z-API accepted the webhook address for every kind (%(kinds)s) and sends the "
            "messages sent from the phone there too. Waiting for the first callback.",
            kinds=_names(hooks),
        )
    parts = []
    if hooks:
        parts.append(_("Z-API accepted the webhook address for: %(kinds)s.", kinds=_names(hooks)))
    if webhook_setup.NOTIFY_SENT_BY_ME in done:
        parts.append(_("The messages sent from the phone are sent there too."))
    failed = _grouped(
        (_sentence(_(s.error.message, **s.error.params)), s.name) for s in steps if s.error
    )
    for reason, names in failed.items():
        parts.append(_("Not set: %(kinds)s. %(reason)s", kinds=_names(names), reason=reason))
    skipped = _grouped((_(step.skipped), step.name) for step in steps if step.skipped)
    for why, names in skipped.items():
        parts.append(_("Not tried: %(kinds)s (%(why)s).", kinds=_names(names), why=why))
    return " ".join(parts)


def _checked(found, connected: bool) -> str:
    """The outcome of "Check Z-API": where each kind goes, and whether the instance is on."""
    if found.all_here and connected:
        return _(
            "Z-API sends every callback here (%(kinds)s), the messages sent from the phone "
            "included, and the instance is connected.",
            kinds=_names(found.here),
        )
    parts = []
    if found.here:
        parts.append(_("Z-API sends these callbacks here: %(kinds)s.", kinds=_names(found.here)))
    if found.elsewhere:
        # Only the other host: the rest of someone else's URL may hold their token.
        elsewhere = ", ".join(
            _("%(kind)s (to %(host)s)", kind=_(webhook_setup.LABELS[kind]), host=host)
            for kind, host in found.elsewhere
        )
        parts.append(
            _("Z-API sends these callbacks to another address: %(kinds)s.", kinds=elsewhere)
        )
    if found.empty:
        parts.append(_("No address is set in Z-API for: %(kinds)s.", kinds=_names(found.empty)))
    if not found.sent_by_me:
        parts.append(
            _("Z-API does not send the messages sent from the phone (notify sent by me is off).")
        )
    if not found.all_here:
        parts.append(_("Save and apply points them all here."))
    if not connected:
        parts.append(
            _(
                "The instance is not connected to WhatsApp: "
                "open the Z-API panel and scan the QR code."
            )
        )
    return " ".join(parts)


def _names(names) -> str:
    """Webhook kinds by the names Z-API's panel shows, in the reader's language."""
    return ", ".join(_(webhook_setup.LABELS[name]) for name in names)


def _sentence(text: str) -> str:
    """``text`` ending as a sentence does, so the next one does not run into Z-API's words."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _grouped(pairs) -> dict[str, list[str]]:
    """The names of (text, name) pairs under each text, both in the order first seen."""
    groups: dict[str, list[str]] = {}
    for text, name in pairs:
        groups.setdefault(text, []).append(name)
    return groups


def _credentials(stored):
    """The opened tokens and None, or None and a message saying why there are none."""
    try:
        found = settings.credentials(stored, vault)
    except VaultError:
        return None, _(
            "The stored tokens cannot be decrypted with this data directory's key; "
            "paste them again and save."
        )
    if found is None:
        return None, _("Save the instance ID and token first.")
    return found, None


def _client_for(credentials):
    return ZapiClient(
        current_app.config["ZAPI_BASE_URL"],
        credentials.instance_id,
        credentials.instance_token,
        credentials.client_token,
        read_timeout=float(current_app.config["ZAPI_TIMEOUT_SECONDS"]),
    )


def _report(action, succeeded, outcome):
    """Audit the outcome, flash it, and go back to the page."""
    with db.writing() as transaction:
        change = settings.record_change(
            transaction, current_user.username, action, succeeded, outcome
        )
    # The flash travels in the session cookie: it shows the audit line, scrubbed.
    flash(change.outcome, "success" if succeeded else "error")
    return redirect(url_for("settings.index"))


def _has_instance_token(form, stored) -> bool:
    if form.instance_token.data or (stored and stored.instance_token_sealed):
        return True
    form.instance_token.errors.append(_("Paste the instance token from the Z-API panel."))
    return False


def _public_url(stored) -> str:
    configured = current_app.config.get("PUBLIC_URL")
    return (stored and stored.public_url) or configured or request.host_url.rstrip("/")


def _page(form, stored):
    with db.reading() as transaction:
        changes = settings.recent_changes(transaction)
        last = deliveries.last_received_at(transaction)
        # A sender (Z-API or another) whose bodies are refused loses those callbacks: the
        # page where webhooks are set up says so.
        refused = rejections.count_since(transaction, utcnow() - REFUSALS_WINDOW)
    return render_template(
        "settings.html",
        form=form,
        stored=stored,
        masked=settings.masked,
        changes=changes,
        last_callback_at=last,
        last_callback_age=settings.seconds_since(last),
        refused_recently=refused,
        button_form=EmptyForm(),
    )
