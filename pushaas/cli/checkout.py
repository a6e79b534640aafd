"""Finding the PushaaS checkout for the commands that run code from it (``dev``,
``manifest``): that code is not part of the installed package, so the command has to
be run from inside a checkout.
"""

from pathlib import Path

import click

# Files only a PushaaS checkout has at its root.
MARKERS = ("pushaas_local/stack.py", "app.py")


def find_checkout(start: Path | None = None) -> Path | None:
    """The checkout containing ``start`` (default: the current directory), if any."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / marker).is_file() for marker in MARKERS):
            return folder
    return None


def require_checkout(command: str) -> Path:
    """The checkout, or a usage error that says where to run ``command``."""
    found = find_checkout()
    if found is None:
        raise click.UsageError(
            f"`pushaas {command}` runs code from a PushaaS checkout: run it inside one "
            f"(no pushaas_local/stack.py in {Path.cwd()} or above)")
    return found
