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
