"""Web forms (Flask-WTF): fields, validation and CSRF tokens."""

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import EqualTo, InputRequired, Length

from .accounts import MIN_PASSWORD_LENGTH, PASSWORD_TOO_SHORT


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
