"""Where API keys come from: --api-key, --api-key-file, JISU_API_KEY, or one generated and kept.

A key file holds one key per line, `KEY` or `NAME:KEY` (the name is the user the key stands
for); blank lines and lines starting with # are skipped.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from jisu.server.access import LOCAL_USER

GENERATED_KEY_FILE = "server-key"  # under JISU_HOME
MIN_KEY_LENGTH = 8


class KeyConfigError(ValueError):
    """A key or key file the user must fix (one line, shown by the CLI)."""


def parse_key(entry: str, where: str) -> tuple[str, str]:
    """'alice:s3cret' -> ('s3cret', 'alice'); 's3cret' -> ('s3cret', LOCAL_USER)."""
    name, sep, key = entry.strip().partition(":")
    if not sep:
        name, key = LOCAL_USER, name
    name, key = name.strip(), key.strip()
    if not name:
        raise KeyConfigError(f"{where}: the user name before ':' is empty")
    if len(key) < MIN_KEY_LENGTH:
        raise KeyConfigError(f"{where}: a key must have at least {MIN_KEY_LENGTH} characters")
    if any(ch.isspace() for ch in key) or not key.isprintable():
        raise KeyConfigError(f"{where}: a key may not contain spaces or control characters")
    return key, name


def read_key_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise KeyConfigError(f"cannot read the key file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise KeyConfigError(f"the key file {path} is not UTF-8 text") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if line.strip() and not line.lstrip().startswith("#"):
            key, name = parse_key(line, f"{path}, line {number}")
            keys[key] = name
    if not keys:
        raise KeyConfigError(f"the key file {path} holds no key")
    return keys


def collect_keys(cli_keys: tuple[str, ...] = (), key_files: tuple[Path, ...] = (),
                 environment: dict[str, str] | None = None) -> dict[str, str]:
    """Every configured key -> its user; empty when none is configured."""
    environment = os.environ if environment is None else environment
    keys: dict[str, str] = {}
    for entry in cli_keys:
        key, name = parse_key(entry, "--api-key")
        keys[key] = name
    for path in key_files:
        keys.update(read_key_file(Path(path)))
    if environment.get("JISU_API_KEY"):
        key, name = parse_key(environment["JISU_API_KEY"], "JISU_API_KEY")
        keys[key] = name
    return keys


def generated_key(home: Path) -> tuple[str, bool]:
    """The key kept under JISU_HOME, made on first use; (key, whether it was just made).
    Written 0600 through a temporary file, so no one else can read it and a crash never
    leaves half a key behind."""
    path = home / GENERATED_KEY_FILE
    try:
        key = path.read_text(encoding="ascii").strip()
        if len(key) >= MIN_KEY_LENGTH:
            return key, False
    except (OSError, UnicodeDecodeError):
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)  # 192 bits, characters safe in URLs and WebSocket headers
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    os.replace(temporary, path)
    return key, True
