"""`python -m botify` is the `botify` command."""

from botify.cli.main import cli

cli()
