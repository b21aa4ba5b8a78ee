"""Find and mask personal data (PII) and secrets in English and Chinese text.

Types: ``EMAIL``, ``PHONE`` (``phonenumbers`` for international and national formats, plus a
pattern for mainland-China mobiles), ``CN_ID`` (resident ID numbers whose ISO 7064 check digit,
birth date and region code are valid, via ``stdnum.cn.ric``), ``BANK_CARD`` (Luhn-valid 13–19
digit numbers with a card-network first digit), ``IP`` (IPv4/IPv6 checked by ``ipaddress``),
``URL_CREDENTIALS`` (``scheme://user:password@host``) and ``SECRET`` (API-key formats and
``key=``/``token=``/``password=`` assignments with a random-looking value).

Chinese text has no spaces, so digit-based patterns use digit lookarounds rather than ``\\b``:
``电话13812345678`` is found, a digit run inside a longer number is not. Every detector runs,
then overlaps are resolved by a fixed type priority (`_PRIORITY`), longer spans first within a
type, so an 18-digit resident ID is never also reported as a phone or a card.

Masking styles: ``tag`` (``[PHONE]``), ``partial`` (``138****5678``) and ``hash``, a keyed
pseudonym (``[PHONE_3f9a2c1b]``, HMAC-SHA256 of the normalised value) that maps one value written
in different ways to one pseudonym without revealing it to anyone who lacks the key.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, get_args

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from luoxia.errors import ConfigError

PII_TYPES: tuple[str, ...] = ("EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP", "URL_CREDENTIALS", "SECRET")
# Overlaps go to the earlier type: the more specific, validated match wins.
_PRIORITY = ("URL_CREDENTIALS", "SECRET", "EMAIL", "CN_ID", "BANK_CARD", "PHONE", "IP")

MaskStyle = Literal["tag", "partial", "hash"]
MASK_STYLES: tuple[str, ...] = get_args(MaskStyle)


@dataclass(frozen=True)
class PIISpan:
    """One finding; ``start``/``end`` are character offsets into the input, ``text`` its slice."""

    type: str
    start: int
    end: int
    text: str


@dataclass
class RedactionResult:
    """The redacted text and the spans that were masked, in offsets of the original text."""

    text: str
    spans: list[PIISpan]

    def to_json(self) -> dict:
        """A record safe to log: types and offsets only, never the original values."""
        return {"text": self.text,
                "spans": [{"type": s.type, "start": s.start, "end": s.end} for s in self.spans]}


# ---------------------------------------------------------------- detection

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])")
# A URL is ASCII; it ends at whitespace, quotes, brackets or the first non-ASCII character ("。").
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<creds>[^\s:/?#@]*:[^\s/?#@]+)"
    r"@(?P<rest>[A-Za-z0-9\[][^\s<>\"'`\x80-\U0010ffff]*)")
_TRAILING_PUNCT = ".,;:!?)]}'\""
_CN_MOBILE = re.compile(r"(?<![0-9])(?:(?:\+|00)86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])")
_CN_ID = re.compile(r"(?<![0-9])[1-9][0-9]{5}[ -]?[0-9]{8}[ -]?[0-9]{3}[0-9Xx](?![0-9])")
_CARD = re.compile(
    r"(?<![0-9])(?:[0-9]{13,19}"
    r"|[0-9]{4}(?P<sep>[ -])[0-9]{4}(?:(?P=sep)[0-9]{4}){1,2}(?:(?P=sep)[0-9]{1,3})?"
    r"|[0-9]{4}(?P<amex>[ -])[0-9]{6}(?P=amex)[0-9]{4,5})(?![0-9])")
_IPV4 = re.compile(r"(?<![A-Za-z0-9_.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![A-Za-z0-9_]|\.[0-9])")
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?![A-Za-z0-9_:]|\.[0-9])")
_SECRET_TOKENS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:"
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[baprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r")(?![A-Za-z0-9_-])")
# `name = value`, `"name": "value"`, `密码：value`, `Bearer value`; the span is the value alone.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?:(?<![A-Za-z0-9])(?:[A-Za-z0-9]+[_-])*(?:api[_-]?key|key|token|secret|password|passwd|pwd)"
    r"|密码|密钥|口令|令牌)[\"']?\s*(?:=|:|：)\s*[\"']?(?P<value>[^\s\"'`,;，。；、\x80-\U0010ffff]+)"
    r"|(?<![A-Za-z0-9])bearer\s+(?P<bearer>[A-Za-z0-9._~+/-]{16,}=*)")


def _strip_trailing(text: str, start: int, end: int) -> int:
    """The end of a match without the sentence punctuation that a greedy pattern swallowed."""
    while end > start and text[end - 1] in _TRAILING_PUNCT:
        end -= 1
    return end


def _spans(kind: str, text: str, bounds: Iterable[tuple[int, int]]) -> Iterator[PIISpan]:
    for start, end in bounds:
        yield PIISpan(kind, start, end, text[start:end])


def _find_emails(text: str, region: str) -> Iterator[PIISpan]:
    return _spans("EMAIL", text, (m.span() for m in _EMAIL.finditer(text)))


def _find_url_credentials(text: str, region: str) -> Iterator[PIISpan]:
    for m in _URL_CREDENTIALS.finditer(text):
        end = _strip_trailing(text, m.start("rest"), m.end())
        if end > m.start("rest"):
            yield PIISpan("URL_CREDENTIALS", m.start(), end, text[m.start():end])


def _find_phones(text: str, region: str) -> Iterator[PIISpan]:
    """``phonenumbers``' matcher (numbers valid in their country) plus mainland mobiles, which it
    misses without a +86 unless the default region is CN."""
    matcher = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    yield from _spans("PHONE", text, ((m.start, m.end) for m in matcher))
    for m in _CN_MOBILE.finditer(text):
        if phonenumbers.is_valid_number(phonenumbers.parse(m.group(), "CN")):
            yield PIISpan("PHONE", m.start(), m.end(), m.group())


def _find_cn_ids(text: str, region: str) -> Iterator[PIISpan]:
    return _spans("CN_ID", text, (m.span() for m in _CN_ID.finditer(text) if ric.is_valid(m.group())))


def _is_card(number: str) -> bool:
    """Luhn-valid, 13–19 digits, and a first digit a card network issues (3–6, or Mastercard's
    2221–2720): one random number in ten passes Luhn, and order numbers often start with a year."""
    digits = re.sub(r"[^0-9]", "", number)
    if not 13 <= len(digits) <= 19 or not luhn.is_valid(digits):
        return False
    return digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720


def _find_cards(text: str, region: str) -> Iterator[PIISpan]:
    return _spans("BANK_CARD", text, (m.span() for m in _CARD.finditer(text) if _is_card(m.group())))


def _is_ipv6(candidate: str) -> bool:
    """A valid address with a decimal digit, so that ``A::B`` in code or ``::`` in prose is not one."""
    if not re.search(r"[0-9]", candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_ipv4(candidate: str) -> bool:
    try:
        ipaddress.IPv4Address(candidate)
    except ValueError:
        return False
    return True


def _find_ips(text: str, region: str) -> Iterator[PIISpan]:
    yield from _spans("IP", text, (m.span() for m in _IPV4.finditer(text) if _is_ipv4(m.group())))
    yield from _spans("IP", text, (m.span() for m in _IPV6.finditer(text) if _is_ipv6(m.group())))


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_secret(value: str) -> bool:
    """At least 8 characters from two or more classes (lower, upper, digit, symbol) with some
    spread: ``Tr0ub4dor&3`` and ``a8f5f167f44f4964e6c998dee827110c`` are secrets, ``timestamp``
    (in ``sort key=timestamp``) and ``aaaaaaa1`` are not."""
    if len(value) < 8:
        return False
    classes = (any(c.islower() for c in value), any(c.isupper() for c in value),
               any(c.isdigit() for c in value), any(not c.isalnum() for c in value))
    return sum(classes) >= 2 and _entropy(value) >= 2.5


def _find_secrets(text: str, region: str) -> Iterator[PIISpan]:
    yield from _spans("SECRET", text, (m.span() for m in _SECRET_TOKENS.finditer(text)))
    for m in _SECRET_ASSIGNMENT.finditer(text):
        group = "value" if m.group("value") is not None else "bearer"
        start = m.start(group)
        end = _strip_trailing(text, start, m.end(group))
        if _looks_secret(text[start:end]):
            yield PIISpan("SECRET", start, end, text[start:end])


_DETECTORS: dict[str, Callable[[str, str], Iterable[PIISpan]]] = {
    "EMAIL": _find_emails, "PHONE": _find_phones, "CN_ID": _find_cn_ids, "BANK_CARD": _find_cards,
    "IP": _find_ips, "URL_CREDENTIALS": _find_url_credentials, "SECRET": _find_secrets,
}


def _check_types(types: Iterable[str] | None) -> tuple[str, ...]:
    if types is None:
        return PII_TYPES
    chosen = (types,) if isinstance(types, str) else tuple(types)
    unknown = [t for t in chosen if t not in PII_TYPES]
    if unknown:
        raise ConfigError(f"unknown PII type(s) {', '.join(map(repr, unknown))}; "
                          f"valid types: {', '.join(PII_TYPES)}")
    return chosen


def _check_region(region: str) -> str:
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"unknown phone region {region!r}; use a two-letter ISO 3166 code such as US, GB or CN")
    return region.upper()


def _resolve_overlaps(candidates: Iterable[PIISpan]) -> list[PIISpan]:
    """Keep the highest-priority (then longest, then first) of any overlapping candidates."""
    order = sorted(set(candidates), key=lambda s: (_PRIORITY.index(s.type), s.start - s.end, s.start))
    starts: list[int] = []
    kept: list[PIISpan] = []  # sorted by start, never overlapping
    for span in order:
        i = bisect.bisect_left(starts, span.start)
        if (i > 0 and kept[i - 1].end > span.start) or (i < len(kept) and kept[i].start < span.end):
            continue
        starts.insert(i, span.start)
        kept.insert(i, span)
    return kept


def find_pii(text: str, types: Iterable[str] | None = None, default_region: str = "US") -> list[PIISpan]:
    """PII spans in ``text``, sorted and non-overlapping. ``default_region`` is the country
    assumed for phone numbers written without a ``+`` country code.

    All detectors run whatever ``types`` asks for, so that a value is classified once (a valid
    resident ID is not a phone even when only phones are requested); ``types`` filters the result.
    """
    wanted = set(_check_types(types))
    region = _check_region(default_region)
    candidates = [span for detect in _DETECTORS.values() for span in detect(text, region)]
    return [span for span in _resolve_overlaps(candidates) if span.type in wanted]


# ---------------------------------------------------------------- masking

def _mask_chars(value: str, head: int, tail: int, target: Callable[[str], bool] = str.isalnum) -> str:
    """``*`` for every target character but the first ``head`` and last ``tail``; separators stay."""
    positions = [i for i, c in enumerate(value) if target(c)]
    hidden = set(positions[head:max(head, len(positions) - tail)])
    return "".join("*" if i in hidden else c for i, c in enumerate(value))


def _parse_phone(value: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(value, "CN" if _CN_MOBILE.fullmatch(value) else region)
    except phonenumbers.NumberParseException:
        return None


def _partial_phone(value: str, region: str) -> str:
    """Country code, trunk prefix and the first three digits of a 10+ digit national number stay,
    as do the last four: ``138****5678``, ``+44 20 7*** 0958``, ``(415) ***-2671``."""
    number = _parse_phone(value, region)
    digits = sum(c.isdigit() for c in value)
    national = len(str(number.national_number)) if number else digits
    prefix = max(0, digits - national - len(number.extension or "")) if number else 0
    return _mask_chars(value, prefix + (3 if national >= 10 else 0), 4, str.isdigit)


def _partial_email(value: str) -> str:
    local, _, domain = value.rpartition("@")
    return f"{local[0]}***@{domain}"


def _partial_ip(value: str) -> str:
    head, sep, _ = value.rpartition("." if "." in value else ":")
    return f"{head}{sep}***"


def _partial_url(value: str) -> str:
    m = _URL_CREDENTIALS.match(value)
    return f"{m.group('scheme')}***:***@{m.group('rest')}" if m else "[URL_CREDENTIALS]"


def _partial(span: PIISpan, region: str) -> str:
    value = span.text
    if span.type == "EMAIL":
        return _partial_email(value)
    if span.type == "PHONE":
        return _partial_phone(value, region)
    if span.type == "CN_ID":
        return _mask_chars(value, 6, 4)
    if span.type == "BANK_CARD":
        return _mask_chars(value, 0, 4)
    if span.type == "IP":
        return _partial_ip(value)
    if span.type == "URL_CREDENTIALS":
        return _partial_url(value)
    return value[:4] + "****"


def _normalise(span: PIISpan, region: str) -> str:
    """One spelling per value, so ``138 1234 5678`` and ``+86-138-1234-5678`` hash alike."""
    value = span.text
    if span.type == "EMAIL":
        return value.lower()
    if span.type == "PHONE":
        number = _parse_phone(value, region)
        if number is not None:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return re.sub(r"[^0-9+]", "", value)
    if span.type == "CN_ID":
        return ric.compact(value)
    if span.type == "BANK_CARD":
        return re.sub(r"[^0-9]", "", value)
    if span.type == "IP":
        return str(ipaddress.ip_address(value))
    return value


def _pseudonym(span: PIISpan, key: bytes, region: str) -> str:
    message = f"{span.type}:{_normalise(span, region)}".encode()
    return f"[{span.type}_{hmac.new(key, message, hashlib.sha256).hexdigest()[:8]}]"


def _check_style(style: str, key: bytes | str | None) -> bytes | None:
    """Validate the style; return the key as bytes (a ``str`` key is UTF-8 encoded)."""
    if style not in MASK_STYLES:
        raise ConfigError(f"unknown mask style {style!r}; valid styles: {', '.join(MASK_STYLES)}")
    if isinstance(key, str):
        key = key.encode()
    if style == "hash" and not key:
        raise ConfigError("mask style 'hash' needs a secret key: pass key=b'...' (at least 16 random bytes, "
                          "e.g. from secrets.token_bytes(32)) and keep it to get the same pseudonyms later")
    return key


def _apply(text: str, spans: list[PIISpan], style: str, key: bytes | None, region: str) -> str:
    pieces, last = [], 0
    for span in spans:
        if style == "tag":
            replacement = f"[{span.type}]"
        elif style == "partial":
            replacement = _partial(span, region)
        else:
            assert key is not None
            replacement = _pseudonym(span, key, region)
        pieces += [text[last:span.start], replacement]
        last = span.end
    return "".join(pieces) + text[last:]


def redact(text: str, style: MaskStyle = "tag", key: bytes | None = None, types: Iterable[str] | None = None,
           default_region: str = "US") -> RedactionResult:
    """Mask the PII in ``text``; see the module docstring for the styles."""
    raw_key = _check_style(style, key)
    region = _check_region(default_region)
    spans = find_pii(text, types, region)
    return RedactionResult(_apply(text, spans, style, raw_key, region), spans)


def mask_pii(text: str) -> tuple[str, int]:
    """`redact` with its defaults as ``luoxia prepare --redact-pii`` uses it (a `luoxia.data.prepare.Mask`):
    the masked text and how many spans were masked."""
    result = redact(text)
    return result.text, len(result.spans)


@dataclass(frozen=True)
class PIIRedactor:
    """A configured `redact`, callable on a string: a data-preparation step or an output filter.
    Its settings are checked when it is made, not on the first text."""

    style: MaskStyle = "tag"
    key: bytes | None = field(default=None, repr=False)
    types: tuple[str, ...] | None = None
    default_region: str = "US"

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _check_style(self.style, self.key))
        if self.types is not None:
            object.__setattr__(self, "types", _check_types(self.types))
        object.__setattr__(self, "default_region", _check_region(self.default_region))

    def redact(self, text: str) -> RedactionResult:
        return redact(text, self.style, self.key, self.types, self.default_region)

    def __call__(self, text: str) -> str:
        return self.redact(text).text
