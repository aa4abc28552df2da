"""The admins' page for the team's accounts."""

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ..accounts import users as accounts
from ..accounts.login import admin_required
from ..extensions import db
from ..forms import EmptyForm, NewUserForm, ResetPasswordForm, RoleForm
from ..models import User

bp = Blueprint("users", __name__, url_prefix="/users")


@bp.route("", methods=["GET", "POST"])
@admin_required
def index():
    """List the accounts; the form at the top adds one."""
    form = NewUserForm()
    if form.validate_on_submit():
        try:
            with db.writing() as transaction:
                accounts.create_user(
                    transaction, form.username.data, form.password.data, form.role.data
                )
        except accounts.AccountError as exc:
            form.username.errors.append(_(str(exc)))
        else:
            flash(_("Account %(name)s added.", name=form.username.data.strip()), "success")
            return redirect(url_for("users.index"))
    with db.reading() as transaction:
        users = transaction.scalars(select(User).order_by(User.username)).all()
    return render_template(
        "users.html",
        form=form,
        users=users,
        role_form=RoleForm,
        password_form=ResetPasswordForm,
        button_form=EmptyForm(),
    )


@bp.post("/<row_id:user_id>/role")
@admin_required
def change_role(user_id: int):
    """Make somebody an admin or a viewer."""
    form = RoleForm()
    return _change(user_id, form, lambda t, user: accounts.set_role(t, user, form.role.data))


@bp.post("/<row_id:user_id>/disable")
@admin_required
def disable(user_id: int):
    """Disable an account and end its sessions."""
    return _change(user_id, EmptyForm(), lambda t, user: accounts.set_active(t, user, False))


@bp.post("/<row_id:user_id>/enable")
@admin_required
def enable(user_id: int):
    """Let a disabled account sign in again."""
    return _change(user_id, EmptyForm(), lambda t, user: accounts.set_active(t, user, True))


@bp.post("/<row_id:user_id>/password")
@admin_required
def reset_password(user_id: int):
    """Give somebody a new password; their open sessions end."""
    form = ResetPasswordForm()
    return _change(
        user_id, form, lambda t, user: accounts.set_password(t, user, form.password.data)
    )


def _change(user_id, form, change):
    """Validate ``form``, apply ``change`` to the user, and report the outcome."""
    if not form.validate_on_submit():
        errors = [error for field_errors in form.errors.values() for error in field_errors]
        flash(" ".join(str(error) for error in errors), "error")
        return redirect(url_for("users.index"))
    try:
        with db.writing() as transaction:
            user = transaction.get(User, user_id)
            if user is None:
                abort(404)
            change(transaction, user)
            name = user.username
    except accounts.AccountError as exc:
        flash(_(str(exc)), "error")
    else:
        flash(_("Account %(name)s updated.", name=name), "success")
    return redirect(url_for("users.index"))
