"""Find and mask personal data (PII) and secrets in English and Chinese text.

Types: ``EMAIL``, ``PHONE`` (``phonenumbers`` for international and national formats, plus a
pattern for mainland-China mobiles), ``CN_ID`` (resident ID numbers with a valid ISO 7064 check digit,
a plausible birth date and a known province code), ``BANK_CARD`` (Luhn-valid 13–19
digit numbers with a card-network first digit), ``IP`` (IPv4/IPv6 checked by ``ipaddress``),
``URL_CREDENTIALS`` (``scheme://user:password@host``) and ``SECRET`` (API-key formats, Luoxia's
own ``lx-`` keys among them, and ``key=``/``token=``/``password=`` assignments with a
random-looking value); and, through the taggers of `luoxia.safety.ner`, ``PERSON`` (张三, John
Smith), ``ADDRESS`` (a span from province or house number to street, ``北京市海淀区中关村大街1号``,
``1600 Pennsylvania Ave NW, Washington, DC 20500``; a city or country alone is not personal data)
and ``ORG`` (found, masked only when asked for: `DEFAULT_PII_TYPES` leaves it out).

Detection reads a folded copy of the text (`luoxia.safety._pii_fold`: NFKC per character, format
characters such as U+200B dropped), so ``１３８１２３４５６７８`` and an ID with a zero-width space
inside are found; spans are mapped back and cover the whole original value, hidden characters
included. Every pattern runs in time linear in the text (see the detection section).

Chinese text has no spaces, so digit-based patterns use digit lookarounds rather than ``\\b``:
``电话13812345678`` is found, a digit run inside a longer number is not. Every detector runs,
then overlaps are resolved by a fixed type priority (`_PRIORITY`), longer spans first within a
type, so an 18-digit resident ID is never also reported as a phone or a card; the tagged types come
last (ADDRESS, then PERSON, then ORG), so a validated value is never swallowed by a guessed one.

Masking styles: ``tag`` (``[PHONE]``), ``partial`` (``138****5678``; names keep the surname or
each word's initial, ``张**``, ``J*** S****``; addresses their province and city, ``北京市***``,
``***, Washington, DC *****``) and ``hash``, a keyed
pseudonym (``[PHONE_3f9a2c1b]``, HMAC-SHA256 of the normalised value) that maps one value written
in different ways to one pseudonym without revealing it to anyone who lacks the key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, get_args

import phonenumbers
import re2
from stdnum import luhn
from stdnum.cn import ric

from luoxia.errors import ConfigError
from luoxia.safety._pii_fold import Folded, fold, fold_with_map
from luoxia.safety.ner import english_tagger, lac_tagger

PIIType = Literal["EMAIL", "PHONE", "CN_ID", "BANK_CARD", "IP", "URL_CREDENTIALS", "SECRET", "PERSON", "ADDRESS", "ORG"]
PII_TYPES: tuple[str, ...] = get_args(PIIType)
ENTITY_TYPES: tuple[str, ...] = ("PERSON", "ADDRESS", "ORG")  # found by taggers (`luoxia.safety.ner`)
# What `find_pii`, `redact` and the guard mask unless told otherwise: an organisation is not personal data.
DEFAULT_PII_TYPES: tuple[str, ...] = tuple(t for t in PII_TYPES if t != "ORG")
# Overlaps go to the earlier type: the more specific, validated match wins; then an address over
# the names inside it (张江路), a person over an organisation (LAC reads 马云集团 either way).
_PRIORITY = ("URL_CREDENTIALS", "SECRET", "EMAIL", "CN_ID", "BANK_CARD", "PHONE", "IP", "ADDRESS", "PERSON", "ORG")

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
#
# Every pattern here runs in time linear in the text. Unbounded ones use RE2 (a linear-time
# engine: no backtracking) through one `finditer` pass each, and are written so that a match
# never needs to look far past its own end; what RE2 cannot say (lookarounds, label rules) is
# checked in Python on the match alone. The Python `re` patterns left start with a lookbehind that
# fails at once inside a run, and are either bounded (at most ~40 characters) or one run of a
# character class, so each run is read once or twice.

# Local part and "@"; the domain is read after it (`_DOMAIN_RUN`), so "a@b@c.com" still finds b@c.com.
# (Runs of one class behind a lookbehind: one attempt per run, in `re`, which is faster per match.)
_EMAIL_LOCAL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@")
_EMAIL_LOCAL_OK = re.compile(r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*")
_DOMAIN_RUN = re.compile(r"[A-Za-z0-9.-]*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
# Groups: 1 the scheme, 2 the credentials, 3 the rest. A URL is ASCII; it ends at whitespace,
# quotes, brackets or the first non-ASCII character ("。").
_URL_CREDENTIALS = re2.compile(
    r"([A-Za-z][A-Za-z0-9+.-]*://)([^\t\n\v\f\r :/?#@]*:[^\t\n\v\f\r /?#@]+)"
    r"@([A-Za-z0-9\[][^\t\n\v\f\r <>\"'`\x{80}-\x{10FFFF}]*)")
_TRAILING_PUNCT = ".,;:!?)]}'\""
_CN_MOBILE = re.compile(r"(?<![0-9])(?:(?:\+|00)86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])")
# 18 characters, optionally grouped 6-8-4 or 6-4-4-4 by spaces or dashes.
_CN_ID = re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:[ -]?[0-9]{8}[ -]?|[ -][0-9]{4}[ -][0-9]{4}[ -])"
                    r"[0-9]{3}[0-9Xx](?![0-9])")
# Groups of four (Amex 4-6-5) whose separators may be missing: a zero-width space between
# groups folds to nothing, so "4111<U+200B>1111 1111 1111" reads 41111111 1111 1111.
_CARD = re.compile(
    r"(?<![0-9])(?:[0-9]{13,19}"
    r"|[0-9]{4}(?:[ -]?[0-9]{4}){2,3}(?:[ -]?[0-9]{1,3})?"
    r"|[0-9]{4}[ -]?[0-9]{6}[ -]?[0-9]{4,5})(?![0-9])")
_IPV4 = re.compile(r"(?<![A-Za-z0-9_.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![A-Za-z0-9_]|\.[0-9])")
# An address may follow a colon that ends a label ("IP:", "地址：" folds to "地址:"), never one inside
# a longer colon run; it never starts with a lone colon (":2001:…" would hide the "2001:…" after it).
_IPV6 = re.compile(
    r"(?:(?<![A-Za-z0-9_:.])|(?<=[^0-9A-Fa-f_:.]:)|(?<=^:))(?!:(?!:))"
    r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})"
    r"(?![A-Za-z0-9_:]|\.[0-9])")
# API keys are whole dot-separated parts of a token run; a JWT is three parts in a row.
_TOKEN_RUN = re.compile(r"(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]{15,}")  # no key is shorter
_SECRET_TOKEN = re.compile(
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[baprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}")
# Luoxia's own keys (KEY_PREFIX + secrets.token_urlsafe(32)) are found even glued to other text:
# from "lx-" to the end of the part.
_LUOXIA_KEY = re.compile(r"lx-[A-Za-z0-9_-]{43,}")
# `name = value`, `"name": "value"`, `密码：value`, `Bearer value`; the span is the value alone.
# A name starts the text or follows a non-alphanumeric character (`OPENAI_KEY=` counts).
_SECRET_ASSIGNMENT = re2.compile(
    r"(?:(?:^|[^A-Za-z0-9])(?i:api[_-]?key|key|token|secret|password|passwd|pwd)|密码|密钥|口令|令牌)"
    r"[\"']?[\t\n\v\f\r ]*(?:=|:|：)[\t\n\v\f\r ]*[\"']?"
    r"([^\t\n\v\f\r \"'`,;，。；、\x{80}-\x{10FFFF}]+)"
    r"|(?:^|[^A-Za-z0-9])(?i:bearer)[\t\n\v\f\r ]+([A-Za-z0-9._~+/-]{16,}=*)")
# Groups: 1 the value of an assignment, 2 that of a bearer token.
# Phone numbers: `phonenumbers` reads windows around runs of digits and phone punctuation only.
# (phonenumbers' own punctuation, "x" included, after folding).
_PHONE_RUN = re.compile(r"[0-9][0-9 \t()\[\]+\-./~x\u2010-\u2015\u2212\u2053\u223c\u30fc]*")
_PHONE_MIN_DIGITS = 4  # the shortest national number any region has
_PHONE_MARGIN = 16  # context kept each side of a run: "+", "(", "ext. 123", a letter before
_PHONE_WINDOW = 256  # longer windows are cut in overlapping pieces of this size
_PHONE_OVERLAP = 64  # longer than any phone number, so each lies whole in one piece
# Letters, digits, "-" and "_" joined to a number: an order or tracking code when it has an uppercase letter.
_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_CODE_REACH = 24  # how far a code is read each side of a number


def _strip_trailing(text: str, start: int, end: int) -> int:
    """The end of a match without the sentence punctuation that a greedy pattern swallowed."""
    while end > start and text[end - 1] in _TRAILING_PUNCT:
        end -= 1
    return end


def _spans(kind: str, text: str, bounds: Iterable[tuple[int, int]]) -> Iterator[PIISpan]:
    for start, end in bounds:
        yield PIISpan(kind, start, end, text[start:end])


def _email_domain(run: str) -> str:
    """The longest prefix of ``run`` that is a domain: valid labels and a final label of two or
    more letters (so ``example.com.`` and ``example.com.x1`` give ``example.com``); ``""`` if none."""
    labels = run.split(".")
    valid = 0
    while valid < len(labels) and _DOMAIN_LABEL.fullmatch(labels[valid]):
        valid += 1
    for count in range(valid, 1, -1):
        tld = labels[count - 1]
        if len(tld) >= 2 and tld.isascii() and tld.isalpha():
            return ".".join(labels[:count])
    return ""


def _find_emails(text: str, region: str) -> Iterator[PIISpan]:
    for m in _EMAIL_LOCAL.finditer(text):
        if not _EMAIL_LOCAL_OK.fullmatch(text, m.start(), m.end() - 1):
            continue
        run = _DOMAIN_RUN.match(text, m.end())
        domain = _email_domain(run.group()) if run else ""
        if domain:
            end = m.end() + len(domain)
            yield PIISpan("EMAIL", m.start(), end, text[m.start():end])


def _find_url_credentials(text: str, region: str) -> Iterator[PIISpan]:
    for m in _URL_CREDENTIALS.finditer(text):
        end = _strip_trailing(text, m.start(3), m.end())
        if end > m.start(3):
            yield PIISpan("URL_CREDENTIALS", m.start(), end, text[m.start():end])


def _phone_windows(text: str) -> Iterator[tuple[int, int]]:
    """Bounded windows of ``text`` that hold every phone number in it: runs of digits and phone
    punctuation with some context, merged when they touch, cut when longer than `_PHONE_WINDOW`."""
    merged: list[list[int]] = []
    for m in _PHONE_RUN.finditer(text):
        if sum(c.isdigit() for c in m.group()) < _PHONE_MIN_DIGITS:
            continue
        start, end = max(0, m.start() - _PHONE_MARGIN), min(len(text), m.end() + _PHONE_MARGIN)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    for start, end in merged:
        while end - start > _PHONE_WINDOW:
            yield start, start + _PHONE_WINDOW
            start += _PHONE_WINDOW - _PHONE_OVERLAP
        yield start, end


_STRONG_MOBILE = re.compile(r"(?:86)?1[3-9][0-9]{9}")


def _code_side(text: str, index: int, step: int) -> bool:
    """Whether the run of `_CODE_CHARS` from ``index`` in direction ``step`` (at most `_CODE_REACH`
    characters) has an uppercase letter and no lowercase one."""
    upper = False
    for _ in range(_CODE_REACH):
        if not 0 <= index < len(text) or text[index] not in _CODE_CHARS:
            break
        if text[index].islower():
            return False
        upper = upper or text[index].isupper()
        index += step
    return upper


def _in_code(text: str, start: int, end: int) -> bool:
    """A number joined to an uppercase code (``ORD-2024-517106``, ``JD4880923804380``) is an order or
    tracking number, not a phone or a card; a lowercase word is not a code (``line4111…`` lost a space).
    Values no code format produces stay personal data even so, or ``TEL13812345678`` and ``X4111…`` would
    walk through the guard: mainland mobiles, ``+`` numbers and 15–19-digit cards."""
    value = re.sub(r"[^0-9+]", "", text[start:end])
    strong = value.startswith("+") or bool(_STRONG_MOBILE.fullmatch(value)) or 15 <= len(value) <= 19
    return not strong and (_code_side(text, start - 1, -1) or _code_side(text, end, 1))


def _ipv4_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _IPV4.finditer(text) if _is_ipv4(m.group())]


def _find_phones(text: str, region: str) -> Iterator[PIISpan]:
    """``phonenumbers``' matcher (numbers valid in their country) plus mainland mobiles, which it
    misses without a +86 unless the default region is CN. The matcher runs on bounded windows:
    its work per candidate is large and unbounded in the candidate's length, and on one whole text
    it gives up after 65,535 candidates, missing every number after them. A dotted quad that is an
    IPv4 address (which the matcher accepts: ``192.168.126.12``) is an IP, and a number in a code is not a phone."""
    ips = bytearray(len(text))
    for start, end in _ipv4_spans(text):
        ips[start:end] = b"\x01" * (end - start)

    def keep(start: int, end: int) -> bool:
        return ips.find(1, start, end) == -1 and not _in_code(text, start, end)

    for start, end in _phone_windows(text):
        matcher = phonenumbers.PhoneNumberMatcher(text[start:end], region, leniency=phonenumbers.Leniency.VALID)
        found = ((start + m.start, start + m.end) for m in matcher)
        yield from _spans("PHONE", text, (span for span in found if keep(*span)))
    for m in _CN_MOBILE.finditer(text):
        if keep(*m.span()) and phonenumbers.is_valid_number(phonenumbers.parse(m.group(), "CN")):
            yield PIISpan("PHONE", m.start(), m.end(), m.group())


def _compact_id(value: str) -> str:
    return re.sub(r"[ -]", "", value).upper()


# Province-level codes (GB/T 2260), the first two digits; 71 Taiwan, 81/82 Hong Kong/Macau, 83 the residence
# permits of Taiwan residents.
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                        50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83})


def _is_cn_id(number: str) -> bool:
    """Check digit, a birth date between 1900 and today, a known province. The district is not
    checked against its history: an ID keeps the code of the district that issued it, which may be
    newer than its holder (a district created in 1986 issues IDs to people born in 1950)."""
    return ric.calc_check_digit(number) == number[17] and _id_layout(number)


def _id_layout(number: str) -> bool:
    """A known province and a birth date between 1900 and today: laid out as a resident ID, check digit aside."""
    if int(number[:2]) not in _PROVINCES:
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()


def _find_cn_ids(text: str, region: str) -> Iterator[PIISpan]:
    return _spans("CN_ID", text, (m.span() for m in _CN_ID.finditer(text) if _is_cn_id(_compact_id(m.group()))))


def _is_card(number: str) -> bool:
    """Luhn-valid, 13–19 digits, and a first digit a card network issues (3–6, or Mastercard's
    2221–2720): one random number in ten passes Luhn, and order numbers often start with a year."""
    digits = re.sub(r"[^0-9]", "", number)
    if not 13 <= len(digits) <= 19 or not luhn.is_valid(digits):
        return False
    return digits[0] in "3456" or 2221 <= int(digits[:4]) <= 2720


def _mistyped_id(text: str, start: int, end: int) -> bool:
    """18 characters in one run (17 digits and an X count too) laid out as a resident ID are an ID
    with a wrong check digit, not a card: one in ten passes Luhn, while a card's digits 7–14 read as
    a plausible birth date about once in two thousand."""
    value = text[start:end + 1] if text[end:end + 1] in ("X", "x") else text[start:end]
    return len(value) == 18 and value[:17].isdigit() and _id_layout(value)


def _find_cards(text: str, region: str) -> Iterator[PIISpan]:
    return _spans("BANK_CARD", text, (m.span() for m in _CARD.finditer(text) if _is_card(m.group())
                                      and not _in_code(text, *m.span()) and not _mistyped_id(text, *m.span())))


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
    yield from _spans("IP", text, _ipv4_spans(text))
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


def _token_secrets(run: str) -> Iterator[tuple[int, int]]:
    """Offsets in a run of ``[A-Za-z0-9_.-]`` of its API keys (whole parts between dots) and JWTs."""
    parts = run.split(".")
    starts = [0]
    for part in parts:
        starts.append(starts[-1] + len(part) + 1)
    i = 0
    while i < len(parts):
        if (parts[i].startswith("eyJ") and len(parts[i]) >= 11 and i + 2 < len(parts)
                and len(parts[i + 1]) >= 8 and len(parts[i + 2]) >= 8):
            yield starts[i], starts[i + 3] - 1
            i += 3
            continue
        if _SECRET_TOKEN.fullmatch(parts[i]):
            yield starts[i], starts[i + 1] - 1
        elif key := _LUOXIA_KEY.search(parts[i]):
            yield starts[i] + key.start(), starts[i + 1] - 1
        i += 1


def _find_secrets(text: str, region: str) -> Iterator[PIISpan]:
    for m in _TOKEN_RUN.finditer(text):
        yield from _spans("SECRET", text, ((m.start() + s, m.start() + e) for s, e in _token_secrets(m.group())))
    for m in _SECRET_ASSIGNMENT.finditer(text):
        group = 1 if m.group(1) is not None else 2  # RE2 matches take group numbers only
        start = m.start(group)
        end = _strip_trailing(text, start, m.end(group))
        if _looks_secret(text[start:end]):
            yield PIISpan("SECRET", start, end, text[start:end])


# ---------------------------------------------------------------- names, places and addresses
#
# PERSON and ORG come from the taggers of `luoxia.safety.ner` (Chinese: LAC; English: a Census
# gazetteer with capitalisation). ADDRESS is assembled. In Chinese, consecutive LOC words
# (北京市 海淀区 中关村大街1号; a gap of up to four characters such as 高新 may sit between two) and the
# house numbers and units after them (3单元1201室) make a candidate, which is an address when one of
# its parts is at street level (路 街 道 巷 胡同 弄 村 …) and it has two parts or a house number. In
# English, a street address is a bounded pattern: a house number, up to four words and a street
# suffix, then an optional direction, unit, city, state and ZIP code. A place alone — 我爱北京, 长城,
# "I visited Paris", even 北京市海淀区 — says where something is, not where someone lives: it is not
# personal data and is left as it is. ORG is found but masked only when asked for (`DEFAULT_PII_TYPES`).

_ZH_UNIT = re.compile(r"[ \t]{0,2}([0-9]{1,6}(?:-[0-9]{1,6})?|[一二三四五六七八九十百零〇]{1,4})?[ \t]{0,2}"
                      r"(?:号楼|号院|号|弄|栋|幢|座|单元|室|楼|层|户)")
_ZH_STREET = re.compile(r"(?:路|街|道|巷|胡同|弄|村|镇|乡|小区|苑|公寓|大厦)[0-9]*$|[0-9](?:号|弄|栋|幢|室)")
_ZH_HOUSE_NUMBER = re.compile(r"(?:[0-9]|[一二三四五六七八九十百零〇])[ \t]{0,2}(?:号|弄|栋|幢|座|单元|室)")
_ZH_ROOM = re.compile(r"[ \t]{0,2}[0-9]{1,6}(?![0-9])")
_ZH_GAP = re.compile(r"[\u4e00-\u9fff0-9]{1,4}")
_ZH_GAP_STOP = re.compile(r"[的在到和与及从往去至是了住向为把被对或]")
_EN_STREET_SUFFIX = ("Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|Terrace|"
                     "Ter|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Trail|Trl|Plaza|Alley|"
                     "Close|Gardens|Crescent|Grove|Row|Mews|Walk|Hill|Green")  # the last line: British streets
_EN_ADDRESS = re.compile(
    r"(?<![A-Za-z0-9.,$£€¥-])(?:(?:Flat|Apt|Apartment|Unit|Suite) [0-9]{1,5}[A-Za-z]?, )?[0-9]{1,6}[A-Za-z]?"
    r"(?: (?:[A-Z][A-Za-z'-]{0,20}|[0-9]{1,3}(?:st|nd|rd|th))){1,4}? "
    rf"(?:{_EN_STREET_SUFFIX})\.?(?![A-Za-z])"
    r"(?: (?:[NS][EW]?|[EW])\.?(?![A-Za-z]))?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Floor|Fl)\.? ?#?[A-Za-z0-9-]{1,6}|,? #[A-Za-z0-9-]{1,6})?"
    r"(?:, [A-Z][A-Za-z'-]{1,20}(?: [A-Z][A-Za-z'-]{1,20}(?![0-9])){0,2}"  # a town; a word before a digit is a postcode
    r"(?:,? [A-Z]{2}(?: [0-9]{5}(?:-[0-9]{4})?)?(?![A-Za-z0-9])"  # US state and ZIP
    r"|,? [A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}(?![A-Za-z0-9]))?)?")  # UK postcode
_CAPITAL = re.compile(r"[A-Z]")


def _zh_address_end(text: str, end: int) -> int:
    """``end`` moved past the house numbers and units that follow (``3单元1201室``); a unit without
    a number only right after a digit (``501`` then ``室``); a bare room number after a building or
    unit (``6号楼205``)."""
    while (m := _ZH_UNIT.match(text, end)) and (m.group(1) or text[end - 1].isdigit()):
        end = m.end()
    if text[end - 1:end] in tuple("楼栋幢座元层") and (m := _ZH_ROOM.match(text, end)):  # 6号楼1901: a room, no 室
        end = m.end()
    return end


def _zh_addresses(text: str, places: list[tuple[int, int]]) -> Iterator[PIISpan]:
    """Addresses among the LOC spans ``places`` (sorted) of Chinese text (see the section comment)."""
    groups: list[list[tuple[int, int]]] = []
    for start, end in places:
        gap = text[groups[-1][-1][1]:start] if groups else None
        if gap == "" or gap and _ZH_GAP.fullmatch(gap) and not _ZH_GAP_STOP.search(gap):
            groups[-1].append((start, end))
        else:
            groups.append([(start, end)])
    for group in groups:
        start, end = group[0][0], _zh_address_end(text, group[-1][1])
        street = any(_ZH_STREET.search(text, s, e) for s, e in group)
        if street and (len(group) > 1 or _ZH_HOUSE_NUMBER.search(text, start, end)):
            yield PIISpan("ADDRESS", start, end, text[start:end])


def _find_zh_entities(text: str) -> Iterator[PIISpan]:
    entities = lac_tagger().tag([text])[0]
    for label, start, end in entities:
        # one character alone is too often a misreading, and a name has letters: LAC calls some digit runs
        # (tracking numbers, an ID's first six digits) names
        if label in ("PER", "ORG") and end - start >= 2 and not text[start:end].isdigit():
            yield PIISpan("PERSON" if label == "PER" else "ORG", start, end, text[start:end])
    yield from _zh_addresses(text, [(s, e) for label, s, e in entities if label == "LOC"])


def _find_entities(text: str) -> Iterator[PIISpan]:
    """PERSON, ADDRESS and ORG candidates (the taggers run only on text that can hold them)."""
    if _HAN.search(text):
        yield from _find_zh_entities(text)
    if _CAPITAL.search(text):
        yield from (PIISpan("PERSON", s, e, text[s:e]) for _, s, e in english_tagger().tag([text])[0])
        yield from _spans("ADDRESS", text, (m.span() for m in _EN_ADDRESS.finditer(text)))


_DETECTORS: dict[str, Callable[[str, str], Iterable[PIISpan]]] = {
    "EMAIL": _find_emails, "PHONE": _find_phones, "CN_ID": _find_cn_ids, "BANK_CARD": _find_cards,
    "IP": _find_ips, "URL_CREDENTIALS": _find_url_credentials, "SECRET": _find_secrets,
}


def _check_types(types: Iterable[str] | None) -> tuple[str, ...]:
    if types is None:
        return DEFAULT_PII_TYPES
    chosen = (types,) if isinstance(types, str) else tuple(types)
    unknown = [t for t in chosen if t not in PII_TYPES]
    if unknown:
        raise ConfigError(f"unknown PII type(s) {', '.join(map(repr, unknown))}; "
                          f"valid types: {', '.join(PII_TYPES)}")
    return chosen


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _check_region(region: str | None, text: str = "") -> str:
    """The phone region: ``region`` when given, else CN for text with Chinese characters, else US."""
    if region is None:
        return "CN" if _HAN.search(text) else "US"
    if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"unknown phone region {region!r}; use a two-letter ISO 3166 code such as US, GB or CN")
    return region.upper()


def _resolve_overlaps(candidates: Iterable[PIISpan], length: int) -> list[PIISpan]:
    """Keep the highest-priority (then longest, then first) of any overlapping candidates; a
    bitmap of taken characters keeps this linear in the total length of the candidates."""
    order = sorted(set(candidates), key=lambda s: (_PRIORITY.index(s.type), s.start - s.end, s.start))
    taken = bytearray(length)
    kept: list[PIISpan] = []
    for span in order:
        if taken.find(1, span.start, span.end) == -1:
            taken[span.start:span.end] = b"\x01" * (span.end - span.start)
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _to_original(text: str, folded: Folded, spans: list[PIISpan]) -> list[PIISpan]:
    """Spans of the folded text as spans of ``text``; one that would overlap the previous (two
    parts of one expanded character, as ㎏ → kg) is dropped."""
    result: list[PIISpan] = []
    for span in spans:
        start, end = folded.span(span.start, span.end)
        if result and start < result[-1].end:
            continue
        result.append(PIISpan(span.type, start, end, text[start:end]))
    return result


def find_pii(text: str, types: Iterable[str] | None = None, default_region: str | None = None) -> list[PIISpan]:
    """PII spans in ``text``, sorted and non-overlapping, of ``types`` (default `DEFAULT_PII_TYPES`:
    every type but ORG). ``default_region`` is the country
    assumed for phone numbers written without a ``+`` country code; None chooses it from the text
    (CN when it has Chinese characters, else US), so ``电话010-62345678`` is a phone.

    Detection reads a folded copy (NFKC, format characters such as zero-width spaces dropped) so
    that ``１３８１２３４５６７８`` or an ID with a U+200B inside is found; the spans are in offsets of
    ``text`` and cover the hidden characters too. All detectors run whatever ``types`` asks for,
    so that a value is classified once (a valid resident ID is not a phone even when only phones
    are requested); ``types`` filters the result. The taggers (PERSON, ADDRESS, ORG: the lowest
    priorities, so they never take a span from another type) run only when one of theirs is asked for.
    """
    wanted = set(_check_types(types))
    region = _check_region(default_region, text)
    folded = fold_with_map(text)
    candidates = [span for detect in _DETECTORS.values() for span in detect(folded.text, region)]
    if wanted.intersection(ENTITY_TYPES):  # the lowest priorities: they never change another type's spans
        candidates += _find_entities(folded.text)
    spans = _to_original(text, folded, _resolve_overlaps(candidates, len(folded.text)))
    return [span for span in spans if span.type in wanted]


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
    head, at, rest = value.partition("@")
    scheme = head.partition("://")[0]
    return f"{scheme}://***:***@{rest}" if at and "://" in head else "[URL_CREDENTIALS]"


def _partial_name(value: str) -> str:
    """``张**`` (the surname, the length hidden), ``J*** S****`` (each word's initial)."""
    if _HAN.match(value):
        return value[0] + "**"
    return " ".join(word[0] + "*" * (len(word) - 1) for word in value.split())


_ZH_CITY = re.compile(r".{0,12}?(?:市|自治州|地区|盟)|.{0,8}?(?:省|自治区|特别行政区)")


def _partial_address(value: str) -> str:
    """The province and city stay, the rest is hidden: ``北京市***``; ``***, Washington, DC *****``."""
    if _HAN.search(value):
        city = _ZH_CITY.match(value)
        return (city.group() if city else "") + "***"
    _, comma, rest = value.partition(", ")
    return "***" + (comma + re.sub(r"[0-9]", "*", rest) if comma else "")


def _partial(span: PIISpan, region: str) -> str:
    """Built from the folded value, so no hidden character of the original survives."""
    value = fold(span.text)
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
    if span.type in ("PERSON", "ORG"):
        return _partial_name(value)
    if span.type == "ADDRESS":
        return _partial_address(value)
    return value[:4] + "****"


def _normalise(span: PIISpan, region: str) -> str:
    """One spelling per value, so ``138 1234 5678`` and ``+86-138-1234-5678`` hash alike."""
    value = fold(span.text)
    if span.type == "EMAIL":
        return value.lower()
    if span.type == "PHONE":
        number = _parse_phone(value, region)
        if number is not None:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return re.sub(r"[^0-9+]", "", value)
    if span.type == "CN_ID":
        return _compact_id(value)
    if span.type == "BANK_CARD":
        return re.sub(r"[^0-9]", "", value)
    if span.type == "IP":
        return str(ipaddress.ip_address(value))
    if span.type in ENTITY_TYPES:
        return " ".join(value.split()).casefold()
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


def _replacement(span: PIISpan, style: str, key: bytes | None, region: str) -> str:
    if style == "tag":
        return f"[{span.type}]"
    if style == "partial":
        return _partial(span, region)
    assert key is not None
    return _pseudonym(span, key, region)


def _apply(text: str, spans: list[PIISpan], style: str, key: bytes | None, region: str) -> str:
    pieces, last = [], 0
    for span in spans:
        pieces += [text[last:span.start], _replacement(span, style, key, region)]
        last = span.end
    return "".join(pieces) + text[last:]


def redact(text: str, style: MaskStyle = "tag", key: bytes | None = None, types: Iterable[str] | None = None,
           default_region: str | None = None) -> RedactionResult:
    """Mask the PII in ``text``; see the module docstring for the styles and `find_pii` for the region."""
    raw_key = _check_style(style, key)
    region = _check_region(default_region, text)
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
    default_region: str | None = None  # None: from each text (CN when it has Chinese characters, else US)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", _check_style(self.style, self.key))
        if self.types is not None:
            object.__setattr__(self, "types", _check_types(self.types))
        if self.default_region is not None:
            object.__setattr__(self, "default_region", _check_region(self.default_region))

    def redact(self, text: str) -> RedactionResult:
        return redact(text, self.style, self.key, self.types, self.default_region)

    def mask(self, span: PIISpan, context: str = "") -> str:
        """What ``span`` (found in a text like ``context``, which chooses the phone region) becomes."""
        return _replacement(span, self.style, self.key, _check_region(self.default_region, context or span.text))

    def __call__(self, text: str) -> str:
        return self.redact(text).text
