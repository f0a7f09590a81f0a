"""The DeviceSecret a dynamic registration earned, kept in the data directory (host only).

With a ProductSecret and no DeviceSecret the controller registers the device once (PROVISION)
and hands the secret it got to the host. The register server refuses a device that has
connected before, so that secret must survive every restart: `store_device_secret` writes it to
`<data_dir>/device_secret`, mode 0600 from the moment the file exists, atomically (a temporary
file in the same directory, fsync'ed, renamed over the old one, the directory fsync'ed), and the
next start reads it back (`read_device_secret`). The value never appears in a log line, an
error or a status file: errors name the file, never its content.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

SECRET_FILE = "device_secret"
FILE_MODE = 0o600  # the owner reads and writes it, nobody else
DIR_MODE = 0o700  # a data directory created for it is the owner's too
MAX_SECRET_BYTES = 256  # what the register reply's scan lets through


class SecretFileError(Exception):
    """The stored secret cannot be read or written. One line; never the secret."""


def secret_path(data_dir: Path) -> Path:
    return data_dir / SECRET_FILE


def read_device_secret(data_dir: Path) -> str | None:
    """The stored DeviceSecret, or None when there is none. SecretFileError when the file is
    unreadable, not a regular file, readable by others (it may have leaked: say so rather than
    use it) or not a secret (empty, too long, not printable ASCII)."""
    path = secret_path(data_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise SecretFileError(f"{path} is readable by others (mode "
                                  f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it, or "
                                  "reset the device and register again")
        raw = os.read(fd, MAX_SECRET_BYTES + 2)
    except OSError as exc:
        raise SecretFileError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    text = raw.removesuffix(b"\n")
    if not text or len(text) > MAX_SECRET_BYTES or not all(0x21 <= b <= 0x7E for b in text):
        raise SecretFileError(f"{path} does not hold a DeviceSecret (value not shown)")
    return text.decode("ascii")


def store_device_secret(data_dir: Path, secret: str) -> Path:
    """Write the secret to `<data_dir>/device_secret` atomically, mode 0600; its path.

    SecretFileError (never with the secret) when it cannot be written."""
    data = secret.encode("ascii")
    if not data or len(data) > MAX_SECRET_BYTES or not all(0x21 <= b <= 0x7E for b in data):
        raise SecretFileError("refusing to store a DeviceSecret that is not printable ASCII")
    path = secret_path(data_dir)
    tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
    try:
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a crash of this very pid number
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask said
            os.write(fd, data + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SecretFileError(f"cannot store the DeviceSecret in {path}: "
                              f"{exc.strerror or exc}") from None
    return path
