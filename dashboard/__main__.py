"""Allow ``python -m dashboard`` as another name for the ``zapi-dashboard`` command."""

from .cli import main

main()
