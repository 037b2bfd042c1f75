"""Make a new API key and print it with its API_KEYS entry.

    .venv/bin/python -m api.keys NAME

The key is shown once; only the `NAME:sha256` entry goes into configuration. To rotate
a key, make a new one under the same name, replace the entry, and hand out the key:
jobs and limits belong to the name, so nothing is orphaned.
"""

import argparse
import hashlib
import re
import secrets


def parse_api_keys(raw: str) -> dict[str, bytes]:
    """Parse `name:sha256-hex` entries; raise ValueError naming a malformed one."""
    keys: dict[str, bytes] = {}
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        name, _, digest = entry.partition(":")
        try:
            value = bytes.fromhex(digest)
        except ValueError:
            value = b""
        if not name or len(value) != hashlib.sha256().digest_size:
            raise ValueError(
                f"API_KEYS entry for {name or '?'!r} is not name:<64 hex digits>"
            )
        keys[name] = value
    return keys


def new_key() -> str:
    """Return a random key with 256 bits of entropy, URL-safe."""
    return "pk_" + secrets.token_urlsafe(32)


def entry_for(name: str, key: str) -> str:
    return f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="who the key is for: letters, digits, '._-'")
    name = parser.parse_args().name
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        parser.error("NAME must be 1-64 letters, digits, '.', '_' or '-'")
    key = new_key()
    print(f"key (give it to the client; it is not stored): {key}")  # noqa: T201
    print(f"API_KEYS entry: {entry_for(name, key)}")  # noqa: T201


if __name__ == "__main__":
    main()
