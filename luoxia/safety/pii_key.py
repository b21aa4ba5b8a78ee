"""The key of keyed pseudonyms (the ``hash`` mask style of `luoxia.safety.pii`): its own setting,
never the watermark key, so publishing or rotating one does not touch the other."""

from __future__ import annotations

import os
import re
from pathlib import Path

from luoxia.errors import ConfigError
from luoxia.safety.watermark import DEMO_KEY

PII_KEY_ENV, PII_KEY_FILE_ENV = "LUOXIA_PII_KEY", "LUOXIA_PII_KEY_FILE"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){16,128}")


def _parse(text: str, source: str) -> bytes:
    text = text.strip()
    if not _HEX.fullmatch(text):
        raise ConfigError(f"pseudonym key from {source}: expected an even number (32 to 256) of hex digits; make "
                          "one with `python -c 'import secrets; print(secrets.token_hex(32))'`")
    if text.lower() == DEMO_KEY:
        raise ConfigError(f"pseudonym key from {source} is the public demo watermark key: anyone could reverse "
                          "the pseudonyms; set a secret key of your own")
    return bytes.fromhex(text)


def resolve_pii_key(key: str | None = None, key_file: str | Path | None = None) -> bytes:
    """The pseudonym key, first found of: ``key`` (hex), ``key_file``, $LUOXIA_PII_KEY,
    $LUOXIA_PII_KEY_FILE; none is an error (there is no default: a public key makes pseudonyms reversible)."""
    if key is not None:
        return _parse(key, "--key")
    key_file = key_file or os.environ.get(PII_KEY_FILE_ENV)
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"pseudonym key file {path} does not exist")
        return _parse(path.read_text(encoding="utf-8"), str(path))
    if os.environ.get(PII_KEY_ENV):
        return _parse(os.environ[PII_KEY_ENV], f"${PII_KEY_ENV}")
    raise ConfigError(f"the hash mask style needs a pseudonym key: pass --key HEX or set ${PII_KEY_ENV} (or "
                      f"${PII_KEY_FILE_ENV}); make one with `python -c 'import secrets; print(secrets.token_hex(32))'`")
