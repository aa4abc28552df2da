"""Files browsers ask for at fixed addresses, outside /static/."""

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("assets", __name__)

# Browsers ask for the icon on every new tab; a day in their cache spares most requests.
ICON_MAX_AGE_SECONDS = 86_400


@bp.get("/favicon.ico")
def favicon():
    """The tab icon, at the address browsers try before they read any page."""
    return send_from_directory(
        current_app.static_folder, "favicon.ico", max_age=ICON_MAX_AGE_SECONDS
    )
