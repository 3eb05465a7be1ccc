"""Local paths and cloud URIs (s3://, gs://, ...) through pyarrow filesystems, as Ray Train does."""
from __future__ import annotations

from pathlib import Path


def filesystem(uri_or_path: str):
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    import pyarrow.fs as pafs

    if "://" in uri_or_path:
        return pafs.FileSystem.from_uri(uri_or_path)
    return pafs.LocalFileSystem(), str(Path(uri_or_path).expanduser().resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def upload_dir(local_dir: str, dest: str):
    """Copy a local directory to `dest` (path or URI) and return it as a `ray.train.Checkpoint`."""
    import pyarrow.fs as pafs
    import ray.train

    fs, path = filesystem(dest)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(local_dir), path, destination_filesystem=fs)
    return ray.train.Checkpoint(path=path, filesystem=fs)


def exists(dest: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(dest)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_json(dest: str):
    """The JSON document at `dest` (path or URI), or None if there is none."""
    import json

    import pyarrow.fs as pafs

    fs, path = filesystem(dest)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read().decode())


def write_json(dest: str, obj) -> None:
    """Write atomically where the filesystem allows (local: temp file + rename)."""
    import json

    fs, path = filesystem(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    data = json.dumps(obj, indent=2, sort_keys=True).encode()
    tmp = f"{path}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    fs.move(tmp, path)


def checkpoint_at(storage_path: str, path: str):
    """A `ray.train.Checkpoint` for a path inside the storage filesystem of `storage_path`."""
    import ray.train

    fs, _ = filesystem(storage_path)
    return ray.train.Checkpoint(path=path, filesystem=fs)


def remove(dest: str) -> None:
    """Delete a file if it exists."""
    import pyarrow.fs as pafs

    fs, path = filesystem(dest)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)
