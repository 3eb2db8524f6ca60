"""The README runs as written: its commands parse against the real CLI, its configs validate,
its Python compiles, and the blocks marked `<!-- run -->` on the line before them run.

A README that drifts from the code is the first thing a new user trips on: an option renamed,
a TOML inline table split across lines, a file name that no longer exists. Every `botify ...`
line of an `sh` block is parsed by the real click commands (unknown options, bad values and
missing sub-commands fail); every `toml` block is parsed and validated by the model it
configures; every `python` block compiles. Blocks marked `<!-- file: NAME -->` are the files
the README's commands name (a custom model, a custom recommender): they are written to a
scratch directory, in which the commands are parsed and blocks marked `<!-- run -->` run,
beside a small world at `data/world`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def marked_blocks(language: str) -> list[tuple[int, str, str]]:
    """(line number, text, the marker comment on the line before it or "") of each `language` block."""
    text = README.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) != language:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        found.append((line, match.group(2), before if before.startswith("<!--") else ""))
    return found


def blocks(language: str) -> list[tuple[int, str, bool]]:
    """(line number, text, marked to run) of each `language` block."""
    return [(line, text, marker == "<!-- run -->") for line, text, marker in marked_blocks(language)]


FILES = {re.match(r"<!-- file: (\S+) -->", marker).group(1): text
         for _, text, marker in marked_blocks("python") if marker.startswith("<!-- file:")}


@pytest.fixture()
def scratch(small_world_dir: Path, tmp_path: Path, monkeypatch) -> Path:
    """A directory with the README's files and a small world at data/world, made current."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "world").symlink_to(small_world_dir, target_is_directory=True)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def commands(script: str) -> list[str]:
    """The shell commands of a block: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.split(" #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def parse_cli(argv: list[str]) -> None:
    """Resolve `botify ARGS` through the click command tree without running it."""
    from botify.cli.main import cli

    command, name, args, parent = cli, "botify", argv, None
    while True:
        context = command.make_context(name, list(args), parent=parent, resilient_parsing=False)
        if not isinstance(command, click.Group):
            return
        rest = context.protected_args + context.args
        if not rest:
            return
        name, command, args = command.resolve_command(context, rest)
        parent = context


SH_LINES = [(line, command) for line, script, _ in blocks("sh") for command in commands(script)
            if command.startswith("botify ")]


@pytest.mark.parametrize(("line", "command"), SH_LINES, ids=[f"README:{line}" for line, _ in SH_LINES])
def test_every_botify_command_parses(line: int, command: str, scratch: Path) -> None:
    """Options and values are checked; a path the command would read need not exist here."""
    argv = shlex.split(command)[1:]
    try:
        parse_cli(argv)
    except click.exceptions.Exit:  # --help, --version
        pass
    except click.BadParameter as error:
        if "does not exist" not in error.format_message():
            pytest.fail(f"README line {line}: `{command}`: {error.format_message()}")
    except click.UsageError as error:
        pytest.fail(f"README line {line}: `{command}`: {error.format_message()}")


TOML_BLOCKS = blocks("toml")


@pytest.mark.parametrize(("line", "text", "run"), TOML_BLOCKS, ids=[f"README:{b[0]}" for b in TOML_BLOCKS])
def test_every_toml_block_validates(line: int, text: str, run: bool) -> None:
    """A block is a whole experiments file (validated as `botify loop` reads it, `[[train]]`
    included), a fragment of one (`[[train]]` or `[[experiments]]` entries alone), or a
    `--sim-config` file (`[returning]` and `[trending]` tables)."""
    from botify.cli.loop import LoopPlan
    from botify.config import validate_config
    from botify.sim.days import ListenerDays

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        pytest.fail(f"README line {line}: not valid TOML: {error}")
    if set(data) & set(ListenerDays.model_fields):
        validate_config(ListenerDays, data, f"README line {line}")
    else:
        LoopPlan.load(data, f"README line {line}")


PYTHON_BLOCKS = blocks("python")


@pytest.mark.parametrize(("line", "text", "run"), PYTHON_BLOCKS, ids=[f"README:{b[0]}" for b in PYTHON_BLOCKS])
def test_every_python_block_compiles(line: int, text: str, run: bool) -> None:
    compile(text, f"README line {line}", "exec")


RUNNABLE = [(line, language, text) for language in ("sh", "python")
            for line, text, run in blocks(language) if run]


@pytest.mark.parametrize(("line", "language", "text"), RUNNABLE, ids=[f"README:{b[0]}" for b in RUNNABLE])
def test_blocks_marked_to_run_run(line: int, language: str, text: str, scratch: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "100"}
    if language == "python":
        argv = [sys.executable, "-c", text]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", text]
    done = subprocess.run(argv, cwd=scratch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"README line {line}:\n{done.stdout}\n{done.stderr}"


def test_the_readme_has_blocks_of_each_kind() -> None:
    """The tests above would pass on a README that lost its examples; it must not."""
    assert len(SH_LINES) >= 20 and len(TOML_BLOCKS) >= 4 and len(PYTHON_BLOCKS) >= 2 and RUNNABLE
    assert {"mymodels.py", "mine.py"} <= set(FILES)


def test_the_readme_custom_recommender_serves(scratch: Path) -> None:
    """The README's own recommender and experiments block, served for real."""
    import asyncio

    from botify.service import Query, ServiceSettings
    from botify.service.app import ServiceData
    from botify.service.recommenders import Chain, Resources
    from botify.service.stores import EmbeddedStore, Listen

    (toml,) = [text for _, text, _ in blocks("toml") if "mine:SameGenre" in text]
    (scratch / "e.toml").write_text(toml)
    data = ServiceData.read(ServiceSettings(catalog=scratch / "data" / "world", experiments=scratch / "e.toml"))
    (experiment,) = data.experiments.active
    chain = Chain(experiment.treatments[1].recommender, Resources(data.catalog, EmbeddedStore(5)))
    answer = asyncio.run(chain.recommend(Query(1, 3, 1.0, [Listen(3, 1.0)])))
    genres = set(data.catalog.records[3].get("genres", []))
    assert answer.recommender == "mine:SameGenre" and genres & set(data.catalog.records[answer.track]["genres"])


def test_the_readme_custom_model_trains(scratch: Path) -> None:
    """`botify train mymodels:MyModel` with the README's file, on a day of real logs."""
    from tests.servers import ServiceThread
    from botify.service import ServiceSettings
    from botify.sim import AgentSpec, SimSettings, Simulation

    settings = ServiceSettings(catalog=scratch / "data" / "world", log_dir=scratch / "log")
    with ServiceThread(settings) as running:
        simulation = Simulation(scratch / "data" / "world", AgentSpec(kind="remote", url=running.url),
                                SimSettings(episodes=300, seed=1))
        try:
            simulation.run_day(1)
        finally:
            simulation.close()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["botify", "train", "mymodels:MyModel", "--logs", "log/", "--catalog", "data/world",
                           "--out", "artifacts/mine"], cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = (scratch / "artifacts" / "mine" / "recommendations.jsonl").read_text().splitlines()
    assert len(lines) > 100 and '"tracks"' in lines[0]


def test_the_notebook_example_runs(tmp_path: Path) -> None:
    """examples/notebook.py, the Python API end to end (world, service, simulate, analyze, events)."""
    example = README.parent / "examples" / "notebook.py"
    done = subprocess.run([sys.executable, str(example), str(tmp_path), "--small"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "600 sessions" in done.stdout and re.search(r"^T1 sticky_artist\s+(WIN|LOSS|no diff)", done.stdout, re.M)
    assert re.search(r"^\d+ events; next-events per treatment: \{'C': \d+, 'T1': \d+\}", done.stdout, re.M)
