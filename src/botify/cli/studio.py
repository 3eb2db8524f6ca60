"""`botify studio`: the service with its studio pages, on embedded defaults a person can use at once.

The same server as `botify serve --studio` (same options, same settings); without
`--experiments` it serves the studio's embedded experiment STUDIO, where a third of the
simulated listeners are answered by a person on the Recommend page.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from botify.cli.serve import run_service, service_options


@click.command()
@service_options
def studio(experiments, **options) -> None:
    """Serve the API and botify studio under /studio: listen, recommend to simulated listeners, watch."""
    if experiments is None:
        experiments = Path(str(resources.files("botify.studio").joinpath("experiments.toml")))
    run_service(experiments=experiments, studio=True, **options)
