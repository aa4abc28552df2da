"""Where the templates, static files and migrations are, in a checkout or an installed wheel."""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (templates, static, migrations) for this installation."""
    # A wheel carries these folders inside the package; a checkout keeps them at the top.
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name
