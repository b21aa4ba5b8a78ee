"""The key of keyed pseudonyms (the ``hash`` mask style of `luoxia.safety.pii`): its own setting,
never the watermark key, so publishing or rotating one does not touch the other."""

from __future__ import annotations

import re
from pathlib import Path

from luoxia.errors import ConfigError
from luoxia.safety.watermark import DEMO_KEY, find_key_text

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
    found = find_key_text(key, key_file, PII_KEY_ENV, PII_KEY_FILE_ENV, "pseudonym")
    if found:
        return _parse(*found)
    raise ConfigError(f"the hash mask style needs a pseudonym key: pass --key HEX or set ${PII_KEY_ENV} (or "
                      f"${PII_KEY_FILE_ENV}); make one with `python -c 'import secrets; print(secrets.token_hex(32))'`")
