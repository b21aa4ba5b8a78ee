"""Slots: values a support answer needs from the conversation (an order number, an account type),
found by patterns learnt from an FAQ's entity offsets, and ``{{Placeholder}}`` filling.

Learning is by shape, not by a model: digits and symbols generalise to a character-class pattern
with the lengths seen (``#85632`` → ``#\\d{5}``; order numbers → ``\\d{8,15}``), short numbers also
need the context words seen around them (``$``, ``dollars``), and words become a vocabulary plus,
for capitalised ones, a shape after the cue word that most often precedes them (``from Mr. Smith``).
Every pattern is alternations of literals and bounded character classes without nested repeats,
so matching is linear in the text.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from pydantic import Field

from luoxia.apps.faq import Entity, FAQEntry
from luoxia.config import Config

PLACEHOLDER = re.compile(r"\{\{([^{}\n]{1,120})\}\}")
MAX_VOCABULARY = 200  # a slot with more distinct words than this is matched by shape only
SHORT_NUMBER = 5  # numbers shorter than this are ambiguous alone: they need a learnt context word
CUE_SHARE = 0.7  # words whose context cue follows them this often are matched only with it
TRIM = " \t\n,.;:!?'\"()"


class SlotConfig(Config):
    """One slot: how to find it in a user's turn, the answer placeholders it fills, what to ask."""

    pattern: str = Field(..., description="regex for the value (group 1 if it has groups, else the match)")
    fallback: str | None = Field(None, description="a looser regex tried only where no slot's pattern matched")
    placeholders: list[str] = Field(default_factory=list, description="answer placeholders it fills ({{…}} names)")
    ask: str = Field(..., description="what the assistant asks when an answer needs this slot and it is missing")


# the worked example's entity types: the placeholder an answer gets, others meaning the same, the question
KNOWN_SLOTS: dict[str, tuple[str, list[str], str]] = {
    "order_id": ("Order Number", ["Order Number Anonymized", "Order ID Anonymized", "Purchase ID Anonymized",
                                  "Purchase Number Anonymized", "order number"],
                 "Could you give me your order number, please?"),
    "invoice_id": ("Invoice Number", ["Invoice Number Anonymized", "Bill Number Anonymized"],
                   "Which invoice is it? Please give me its number (for example #12345)."),
    "account_type": ("Account Type", [], "Which type of account do you mean?"),
    "person_name": ("Person Name", ["Name Field Anonymized"], "Under which name is it?"),
    "delivery_city": ("Delivery City", [], "Which city should it be delivered to?"),
    "delivery_country": ("Delivery Country", [], "Which country should it be delivered to?"),
    "refund_amount": ("Refund Amount", [], "How much should be refunded?"),
}


def slot_label(kind: str) -> str:
    """The placeholder a slot's value fills in an answer: ``order_id`` → ``Order Number``."""
    return KNOWN_SLOTS[kind][0] if kind in KNOWN_SLOTS else kind.replace("_", " ").title()


def surface(question: str, entity: Entity) -> str:
    """The entity as written: the offset span trimmed, or the value where the span misses it."""
    span = question[entity.start:entity.end].strip(TRIM)
    if span and (entity.value in span or span in entity.value):
        return span
    return entity.value if entity.value in question else span


def _char_class(char: str) -> str:
    return "d" if char.isdigit() else "a" if char.isalpha() else char


def _runs(text: str) -> list[tuple[str, int]]:
    """``#85632`` → [('#', 1), ('d', 5)]: character classes and run lengths."""
    runs: list[tuple[str, int]] = []
    for char in text:
        kind = _char_class(char)
        if runs and runs[-1][0] == kind:
            runs[-1] = (kind, runs[-1][1] + 1)
        else:
            runs.append((kind, 1))
    return runs


def _shape_pattern(values: Sequence[str]) -> str:
    """Digits/letters runs with the lengths seen, per skeleton: ``\\d{8,15}|#\\d{5}``."""
    lengths: dict[tuple[str, ...], list[list[int]]] = defaultdict(list)
    for value in values:
        runs = _runs(value)
        lengths[tuple(kind for kind, _ in runs)].append([n for _, n in runs])
    alternatives = []
    for skeleton, seen in sorted(lengths.items()):
        parts = []
        for i, kind in enumerate(skeleton):
            low, high = min(s[i] for s in seen), max(s[i] for s in seen)
            size = f"{{{low}}}" if low == high else f"{{{low},{high}}}"
            parts.append(r"\d" + size if kind == "d" else "[^\\W\\d_]" + size if kind == "a"
                         else re.escape(kind) + ("" if low == high == 1 else size))
        alternatives.append("".join(parts))
    return rf"(?<![0-9#])(?:{'|'.join(alternatives)})(?![0-9])"


def _context(entries: list[tuple[str, Entity]]) -> tuple[list[str], list[str]]:
    """The words seen right before and right after the spans, most common first (cues)."""
    before, after = Counter(), Counter()
    for question, entity in entries:
        left = re.findall(r"[^\W\d_]+|\$", question[:entity.start].lower())
        right = re.findall(r"[^\W\d_]+", question[entity.end:].lower())
        if left:
            before[left[-1]] += 1
        if right:
            after[right[0]] += 1
    keep = max(2, len(entries) // 20)  # a cue seen in at least 5% of the examples
    return ([w for w, n in before.most_common(5) if n >= keep], [w for w, n in after.most_common(5) if n >= keep])


def _share_followed(examples: list[tuple[str, Entity]], cues: list[str]) -> float:
    """The share of examples whose entity is followed by one of ``cues``."""
    hits = sum(bool(re.match(rf"\W{{0,2}}(?:{'|'.join(map(re.escape, cues))})", q[e.end:].lower().lstrip()))
               for q, e in examples)
    return hits / max(len(examples), 1)


def _cued(core: str, before: list[str], after: list[str]) -> str:
    """``core`` captured, preceded by a cue word or followed by one."""
    options = []
    if before:  # a word cue must start a word; a symbol ($) may follow anything
        left = "|".join(rf"(?<![^\W\d_]){re.escape(w)}" if w.isalpha() else re.escape(w) for w in before)
        options.append(rf"(?i:{left})\s{{0,2}}({core})")
    if after:
        right = "|".join(re.escape(w) for w in after)
        options.append(rf"({core})\s{{0,2}}(?i:(?:{right})(?![^\W\d_]))")
    return "|".join(options) or f"({core})"


def _word_shape(values: Sequence[str]) -> str:
    """Capitalised words as seen: ``Mr. Smith``, ``Anna Freeman`` → one or two such words."""
    most = max(len(v.split()) for v in values)
    word = r"[A-Z][a-z]{1,20}\.?"
    return word + "".join(rf"(?: {word})?" for _ in range(min(most, 3) - 1))


def learn_slot(kind: str, examples: list[tuple[str, Entity]]) -> SlotConfig:
    """A slot's patterns from its annotated questions."""
    values = sorted({surface(q, e) for q, e in examples} - {""})
    label, aliases, ask = KNOWN_SLOTS.get(kind, (slot_label(kind), [], f"Could you tell me the "
                                                                      f"{slot_label(kind).lower()}?"))
    before, after = _context(examples)
    fallback = None
    if all(any(c.isdigit() for c in v) for v in values):
        core = _shape_pattern(values)
        short = min(len(re.sub(r"\D", "", v)) for v in values) < SHORT_NUMBER
        pattern = _cued(core, before, after) if short and (before or after) else f"({core})"
    else:
        words = sorted({v.lower() for v in values}, key=lambda w: (-len(w), w))[:MAX_VOCABULARY]
        vocabulary = "|".join(re.escape(w) for w in words)
        pattern = rf"(?i:(?<![^\W_])({vocabulary})(?![^\W_]))"
        if after and _share_followed(examples, after) >= CUE_SHARE:  # "free" only as in "free account"
            pattern = rf"(?i:(?<![^\W_])({vocabulary})\s{{0,2}}(?:{'|'.join(re.escape(w) for w in after)}))"
        if sum(v[:1].isupper() for v in values) * 2 > len(values) and before:
            fallback = _cued(_word_shape(values), before[:2], [])
    return SlotConfig(pattern=pattern, fallback=fallback, placeholders=[label, *aliases], ask=ask)


def learn_slots(entries: Sequence[FAQEntry], min_examples: int = 3) -> dict[str, SlotConfig]:
    """One slot per entity type annotated at least ``min_examples`` times."""
    by_kind: dict[str, list[tuple[str, Entity]]] = defaultdict(list)
    for entry in entries:
        for entity in entry.entities:
            by_kind[entity.type].append((entry.question, entity))
    return {kind: learn_slot(kind, examples) for kind, examples in sorted(by_kind.items())
            if len(examples) >= min_examples}


def _value(match: re.Match[str]) -> tuple[str, int, int]:
    for i in range(1, (match.re.groups or 0) + 1):
        if match.group(i) is not None:
            return match.group(i).strip(TRIM), match.start(i), match.end(i)
    return match.group(0).strip(TRIM), match.start(), match.end()


def find_slots(slots: dict[str, SlotConfig], text: str) -> dict[str, str]:
    """Slot values in one text: each slot's first match; fallbacks only over text no slot matched."""
    found: dict[str, str] = {}
    taken: list[tuple[int, int]] = []
    for kind, slot in slots.items():
        match = re.search(slot.pattern, text)
        if match:
            value, start, end = _value(match)
            if value:
                found[kind] = value
                taken.append((start, end))
    candidates = []
    for kind, slot in slots.items():
        if kind not in found and slot.fallback:
            candidates += [(kind, *_value(match)) for match in re.finditer(slot.fallback, text)]
    for kind, value, start, end in sorted(candidates, key=lambda c: c[2] - c[3]):  # longest first
        if kind not in found and value and not any(start < b and a < end for a, b in taken):
            found[kind] = value
            taken.append((start, end))
    return found


def conversation_slots(slots: dict[str, SlotConfig], user_turns: Sequence[str]) -> dict[str, str]:
    """Slot values from every user turn, a later turn's value winning."""
    values: dict[str, str] = {}
    for turn in user_turns:
        values.update(find_slots(slots, turn))
    return values


def templatize(entry: FAQEntry, slots: dict[str, SlotConfig]) -> str:
    """The entry's answer with the question's own entity values replaced by their placeholders, so
    another customer's answer never repeats this one's order number."""
    answer = entry.answer
    for entity in entry.entities:
        value = surface(entry.question, entity)
        if entity.type not in slots or not value:
            continue
        placeholder = "{{" + slots[entity.type].placeholders[0] + "}}"
        following = re.findall(r"[^\W\d_]+", entry.question[entity.end:])[:1]
        if any(c.isdigit() for c in value):
            pattern, flags = rf"(?<![\w#]){re.escape(value)}(?!\w)", re.IGNORECASE
        elif following:  # a word such as "free": only before the question's next word ("free account")
            stem = re.escape(following[0][:5])  # "accounts" in the question, "account" in the answer
            pattern, flags = rf"(?<!\w){re.escape(value)}(?=\s+{stem})", re.IGNORECASE
        elif value != value.lower():  # a name as written ("Mr. Smith", "Toronto")
            pattern, flags = rf"(?<!\w){re.escape(value)}(?!\w)", 0
        else:
            continue
        answer = re.sub(pattern, placeholder, answer, flags=flags)
    return answer


def placeholders(answer: str) -> list[str]:
    return list(dict.fromkeys(m.group(1).strip() for m in PLACEHOLDER.finditer(answer)))


def needed_slots(answer: str, slots: dict[str, SlotConfig]) -> list[str]:
    """The slots whose placeholders ``answer`` holds, in order of first use."""
    owner = {name.lower(): kind for kind, slot in slots.items() for name in slot.placeholders}
    return list(dict.fromkeys(owner[p.lower()] for p in placeholders(answer) if p.lower() in owner))


def fill(answer: str, values: dict[str, str], slots: dict[str, SlotConfig],
         constants: dict[str, str | None]) -> str:
    """Placeholders replaced: slots by the conversation's values, shop constants by the app's
    settings; a constant left unset reads as its own name (``Order History``: a page's label)."""
    owner = {name.lower(): kind for kind, slot in slots.items() for name in slot.placeholders}
    lowered = {name.lower(): value for name, value in constants.items()}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        kind = owner.get(name.lower())
        if kind is not None and kind in values:
            return values[kind]
        constant = lowered.get(name.lower())
        return constant if constant else name

    return PLACEHOLDER.sub(replace, answer)
