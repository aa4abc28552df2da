"""A marker for messages defined outside Flask and translated where they are shown."""


def N_(message: str) -> str:  # the name gettext tools look for
    """Mark ``message`` for the catalogs; return it unchanged, to be translated later."""
    return message
