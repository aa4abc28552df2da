"""Web forms (Flask-WTF): fields, validation and CSRF tokens."""

import re
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length, Optional, Regexp

from .accounts.users import MIN_PASSWORD_LENGTH, PASSWORD_TOO_SHORT


def _role_choices():
    return [
        ("viewer", _l("Viewer (can look)")),
        ("admin", _l("Admin (manages settings and users)")),
    ]


def _new_password(label):
    return PasswordField(
        label,
        validators=[
            InputRequired(),
            Length(
                min=MIN_PASSWORD_LENGTH,
                max=1024,
                message=_l(PASSWORD_TOO_SHORT),
            ),
        ],
    )


def _confirmation():
    return PasswordField(
        _l("Repeat the password"),
        validators=[InputRequired(), EqualTo("password", message=_l("The passwords differ."))],
    )


class LoginForm(FlaskForm):
    """Sign in with a username and a password."""

    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=1024)])


class SetupForm(FlaskForm):
    """The first admin of a new install."""

    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = _new_password(_l("Password"))
    confirm = _confirmation()


class NewUserForm(FlaskForm):
    """An admin adds an account."""

    username = StringField(_l("Username"), validators=[InputRequired(), Length(max=64)])
    password = _new_password(_l("Password"))
    role = SelectField(_l("Role"), choices=_role_choices)


class RoleForm(FlaskForm):
    """An admin changes somebody's role."""

    role = SelectField(_l("Role"), choices=_role_choices)


class ResetPasswordForm(FlaskForm):
    """An admin sets a new password for somebody."""

    password = _new_password(_l("New password"))


class EmptyForm(FlaskForm):
    """A button that changes state: only the CSRF token."""


class ChangePasswordForm(FlaskForm):
    """A user changes their own password."""

    current = PasswordField(_l("Current password"), validators=[InputRequired()])
    password = _new_password(_l("New password"))
    confirm = _confirmation()


class NewApiTokenForm(FlaskForm):
    """A user names a new personal API token."""

    name = StringField(_l("Token name"), validators=[InputRequired(), Length(max=64)])


class LanguageForm(FlaskForm):
    """A user picks the language of the pages."""

    language = SelectField(
        _l("Language"),
        choices=[
            SelectChoice("", _l("Same as the browser")),
            # Each language is named in itself, so anyone can find their own.
            SelectChoice("pt_BR", "Português (Brasil)"),
            SelectChoice("en", "English"),
        ],
    )


# Z-API shows instance ids and tokens as letters and digits only.
_ZAPI_ID = Regexp(
    r"^[A-Za-z0-9]{16,64}$",
    message=_l("Use the 16 to 64 letters and digits shown in the Z-API panel."),
)
_CLIENT_TOKEN = Regexp(
    r"^[A-Za-z0-9]{16,128}$",
    message=_l("Use the 16 to 128 letters and digits of the panel's Security tab."),
)


# RFC 3986 path characters, less the quote: unreserved, %XX, sub-delims, ":", "@" and "/".
_URL_PATH = re.compile(r"(?:[A-Za-z0-9._~!$&()*+,;=:@/-]|%[0-9A-Fa-f]{2})*")
# A host name or [IPv6] address, and an optional port; nothing else belongs there.
_URL_HOST = re.compile(r"[A-Za-z0-9.\[\]_:-]+")


def _public_https_url(form, field):
    """Z-API refuses webhooks that are not https; the URL must be a plain base address."""
    try:
        parts = urlsplit((field.data or "").strip())
        parts.port  # noqa: B018 - reading it checks the port is a number in range
    except ValueError:
        raise ValidationError(
            _l("The address is not a valid URL, e.g. https://dashboard.example.com.")
        ) from None
    if parts.scheme != "https":
        raise ValidationError(_l("The address must start with https:// (Z-API refuses http)."))
    if not parts.hostname:
        raise ValidationError(
            _l("The address needs a host name, e.g. https://dashboard.example.com.")
        )
    if parts.username or parts.password:
        raise ValidationError(_l("The address must not contain a user name or password."))
    if parts.query or parts.fragment or "?" in field.data or "#" in field.data:
        raise ValidationError(_l("The address must not contain ? or #."))
    if not _URL_HOST.fullmatch(parts.netloc):
        raise ValidationError(
            _l("The host name may hold only letters, digits, dots, hyphens and a :port.")
        )
    if not _URL_PATH.fullmatch(parts.path):
        raise ValidationError(
            _l(
                "The path after the host may hold only letters, digits, percent escapes and "
                "/ - . _ ~ : @ ! $ & ( ) * + , ; = (no spaces, quotes or angle brackets)."
            )
        )


class SettingsForm(FlaskForm):
    """The Z-API connection: instance, tokens and the address Z-API calls."""

    instance_id = StringField(_l("Instance ID"), validators=[InputRequired(), _ZAPI_ID])
    # Empty keeps the stored token; the page never shows a stored token in full.
    instance_token = PasswordField(_l("Instance token"), validators=[Optional(), _ZAPI_ID])
    client_token = PasswordField(_l("Client-Token"), validators=[Optional(), _CLIENT_TOKEN])
    public_url = StringField(
        _l("Public address of this dashboard"), validators=[InputRequired(), _public_https_url]
    )
    set_chat_presence = BooleanField(_l("Also receive typing/presence events"))
