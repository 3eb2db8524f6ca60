"""`botify logs push`: closed log files (JSON lines or compacted directories) to shared storage,
the course's "upload the logs to HDFS" step.

Any filesystem pyarrow reaches (a local path, file://, hdfs://, s3:// with its options in the
URI's query, gs://) and, through fsspec, any other. A push can be repeated: a file already there
with the same size and SHA-256 is skipped, one that differs (a log that grew since) is copied
again. Outside S3 (whose objects appear only once whole) a file is written under a hidden name
and then renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from botify.errors import BotifyError
from botify.events.files import expand

CHUNK = 8 << 20


@dataclass(frozen=True)
class Pushed:
    copied: list[str]
    skipped: list[str]
    bytes: int


def open_filesystem(uri: str):
    """(pyarrow filesystem, path in it) for `uri`."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:
        if "://" not in uri:
            raise BotifyError(f"{uri}: {error}") from error
        try:
            import fsspec
        except ImportError:
            raise BotifyError(f"{uri}: pyarrow cannot open it ({error}) and fsspec is not installed") from None
        try:
            filesystem, path = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError, OSError) as fsspec_error:
            raise BotifyError(f"{uri}: cannot open it: {error}; fsspec: {fsspec_error}") from fsspec_error
        return fs.PyFileSystem(fs.FSSpecHandler(filesystem)), path


def _digest(stream) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _local_files(paths: list[str | Path]) -> list[tuple[Path, str]]:
    """(file, its path under the destination): a JSON-lines file by its name, a compacted
    directory with everything in it under the directory's name."""
    pairs = []
    for name in expand(paths):
        path = Path(name)
        if path.is_dir():
            pairs.extend((file, f"{path.name}/{file.relative_to(path).as_posix()}")
                         for file in sorted(path.rglob("*")) if file.is_file())
        else:
            pairs.append((path, path.name))
    return pairs


def push(paths: list[str | Path], uri: str) -> Pushed:
    """Copy the logs in `paths` under `uri`; files already there, whole, are skipped."""
    from pyarrow import ArrowException, fs

    filesystem, root = open_filesystem(uri)
    atomic = filesystem.type_name == "s3"
    copied, skipped, written = [], [], 0
    for local, relative in _local_files(paths):
        target = f"{root.rstrip('/')}/{relative}"
        try:
            with open(local, "rb") as handle:
                checksum, size = _digest(handle), local.stat().st_size
            info = filesystem.get_file_info(target)
            if info.type == fs.FileType.File and info.size == size:
                with filesystem.open_input_stream(target) as stream:
                    if _digest(stream) == checksum:
                        skipped.append(relative)
                        continue
            filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
            staging = target if atomic else f"{target.rsplit('/', 1)[0]}/.{target.rsplit('/', 1)[1]}.part"
            with open(local, "rb") as handle, filesystem.open_output_stream(staging) as stream:
                while chunk := handle.read(CHUNK):
                    stream.write(chunk)
            if not atomic:
                filesystem.move(staging, target)
        except (OSError, ArrowException) as error:
            raise BotifyError(f"cannot push {local} to {uri}: {error}") from error
        copied.append(relative)
        written += size
    return Pushed(copied, skipped, written)
