"""Every pattern that sees user text runs in linear time (issue 13 item 3, "a scaling test, not a
stopwatch"): for adversarial inputs, redaction by the patterns (`redact` of every type but the
tagged ones), the taggers' names and addresses (`find_pii` of PERSON, ADDRESS, ORG: 100 KB against
10 KB, LAC being slower per character) and moderation by the rules
(`Moderator(classifier=None)`; the classifier truncates its input; with ``explain`` too, issue 14
item 6) at 1 MB take under 20× their time at 100 KB, both measured in one run as the child's CPU
time, which other processes on the machine (a parallel test worker) do not inflate the way they
inflate wall time (100 KB: best of 2; 1 MB: once, up to three times while over 20×). Linear work
gives ~10×, quadratic 100×.

The work runs in a child process, over a ladder of sizes (1 KB, 10 KB, 100 KB, 1 MB): a step whose
wall time passes 60× the previous step's CPU time (plus a 2 s allowance; a busy machine stretches
wall time) is stopped and fails at once, so a quadratic pattern fails in minutes rather than hours.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from luoxia.safety.moderation import Moderator
from luoxia.safety.pii import ENTITY_TYPES, PII_TYPES, find_pii, redact

pytestmark = pytest.mark.slow

SIZES = (1_000, 10_000, 100_000, 1_000_000)
# The taggers (LAC reads ~30 µs a character) climb one step less: 100 KB against 10 KB.
TAGGER_SIZES = (1_000, 10_000, 100_000)
PATTERN_TYPES = tuple(t for t in PII_TYPES if t not in ENTITY_TYPES)
REPEATS = 2
RETRIES = 2  # more tries of the 1 MB size while its ratio is over MAX_RATIO
MAX_RATIO = 20  # time(1 MB) / time(100 KB); linear is ~10
# A smaller size timed under this is compared as this: at ~10 ms the CPU clock's granularity and cold
# caches, not the pattern, set the time (a street address at 10 KB: 14 ms, then 271 ms at 100 KB on a
# busy CI machine). Quadratic work still fails: 100× a 10 ms step is 1 s, over 20 × 50 ms.
MIN_BASE_S = 0.05
# A step's wall-clock limit: 60× the previous step's CPU time, plus 2 s. A watchdog, not the check: a
# CI machine running three processes on two cores stretches wall time ~3× past CPU time (LAC at
# 100 KB: 12.9 s of wall against 0.435 s of CPU at 10 KB), while quadratic work (100×) still stops.
STEP_TIMEOUT_RATIO, STEP_ALLOWANCE_S = 60, 2.0
WARM_UP_TIMEOUT_S = 300.0  # the child's imports and the moderator's rules

# Each input is a unit repeated to the size: what each kind of pattern backtracks on.
ADVERSARIAL = {
    "a_": "a_",  # e-mail local parts, secret values
    "1-": "1-",  # phone numbers, cards and IDs with separators
    "digits": "1234567890",  # a digit run: cards, IDs, phones
    "dots": "1.",  # "1.1.1.1...": IPv4, e-mail domains
    "url-creds": "http://a:b@",  # nested URL credentials
    "at": "a@",  # e-mail
    "key=": "key=",  # secret assignments
    "bearer": "Bearer ",  # bearer tokens
    "colons": "1:",  # IPv6
    "fullwidth": "１２３４ ",  # full-width digit groups
    "zero-width": "1\u200b",  # digits broken by zero-width spaces
    "spaces": " \t",  # whitespace runs: moderation's \s+
    "kill": "kill ",  # the allow patterns' "kill ... process"
    "how": "how do i ",  # the illicit rules' prefixes
    "zh": "怎么 制作",  # Chinese rules with separators
    "mixed": "a_1-1.a@key=http://a:b@ 1３8\u200b ",
    "names-zh": "张三",  # one sentence without punctuation: LAC's pieces, PER spans
    "places-zh": "北京市海淀区路1号",  # LOC chains and house numbers: address assembly
    "names-en": "John Smith ",  # capitalised runs: the gazetteer
    "street-en": "1 Main St, ",  # street addresses: the bounded pattern
    "initials": "1 A B. ",  # numbers and capitals that almost make an address or a name
}
TARGETS = ("redact", "moderate", "entities")
# The taggers see only what can hold a name or an address: Chinese, capitals, house numbers.
TAGGED = ("zh", "mixed", "names-zh", "places-zh", "names-en", "street-en", "initials")
CASES = [(target, name) for target in TARGETS for name in ADVERSARIAL if target != "entities" or name in TAGGED]
# `moderate(..., explain=True)` also maps spans back through the normalisation: on the inputs that
# change offsets (dropped, widened, cut characters) and on one whose matches all count and explain.
EXPLAIN_UNITS = {name: ADVERSARIAL[name] for name in ("zero-width", "fullwidth", "spaces", "zh", "mixed")}
EXPLAIN_UNITS["evidence"] = "I will k1ll  you, kill the pro\u200bcess ｎｏｗ 怎麼 製作 炸彈 "


def _worker(connection: Connection) -> None:
    """In the child: for each (target, unit, size), build the text, run the target once, send its time."""
    moderator = Moderator(classifier=None)
    connection.send(0.0)
    while (message := connection.recv()) is not None:
        target, unit, size = message
        text = (unit * (size // len(unit) + 1))[:size]
        start = time.process_time()
        if target == "redact":
            redact(text, types=PATTERN_TYPES)
        elif target == "entities":
            find_pii(text, types=ENTITY_TYPES)
        else:
            moderator.moderate([text], explain=target == "explain")
        connection.send(time.process_time() - start)


class Worker:
    """A child process that times the guard's functions and can be stopped mid-pattern."""

    def __init__(self) -> None:
        self.process: multiprocessing.process.BaseProcess | None = None
        self.connection: Connection | None = None

    def _start(self) -> Connection:
        context = multiprocessing.get_context("spawn")  # no fork of a multi-threaded test process
        parent, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()
        self.connection = parent
        self._receive(WARM_UP_TIMEOUT_S, "the child did not start")
        return parent

    def _receive(self, timeout: float, why: str) -> float:
        assert self.connection is not None
        if not self.connection.poll(timeout):
            self.stop()
            pytest.fail(why, pytrace=False)
        return float(self.connection.recv())

    def time(self, target: str, unit: str, size: int, timeout: float, why: str) -> float:
        connection = self.connection or self._start()
        connection.send((target, unit, size))
        return self._receive(timeout, why)

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=10)
        self.process, self.connection = None, None


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    worker = Worker()
    yield worker
    if worker.connection is not None and worker.process is not None and worker.process.is_alive():
        worker.connection.send(None)
        worker.process.join(timeout=10)
    worker.stop()


@pytest.mark.parametrize(("target", "name"), CASES)
def test_work_grows_linearly_with_the_input(worker: Worker, target: str, name: str):
    """1 MB of an adversarial input costs under 20× what 100 KB costs."""
    check_linear(worker, target, name, ADVERSARIAL[name])


@pytest.mark.parametrize("name", list(EXPLAIN_UNITS))
def test_explaining_grows_linearly_with_the_input(worker: Worker, name: str):
    """Issue 14 item 6: evidence (spans mapped back to the text as given) keeps moderation linear."""
    check_linear(worker, "explain", name, EXPLAIN_UNITS[name])


def check_linear(worker: Worker, target: str, name: str, unit: str) -> None:
    """Time ``target`` on ``unit`` repeated up each size of the ladder; the largest must cost under
    20× the one before (1 MB against 100 KB; the taggers 100 KB against 10 KB)."""
    sizes = TAGGER_SIZES if target == "entities" else SIZES
    times: dict[int, float] = {}
    for smaller, size in zip((None, *sizes), sizes, strict=False):
        limit = STEP_TIMEOUT_RATIO * times[smaller] + STEP_ALLOWANCE_S if smaller else WARM_UP_TIMEOUT_S
        why = (f"{target} of {name!r} at {size:,} characters ran past {limit:.1f} s, over {STEP_TIMEOUT_RATIO}× its "
               f"time at {smaller or 0:,} ({times.get(smaller or 0, 0):.3f} s): not linear")
        repeats = REPEATS if size == sizes[-2] else 1  # the largest size again only if it looks too slow
        times[size] = min(worker.time(target, unit, size, limit, why) for _ in range(repeats))
    base = max(times[sizes[-2]], MIN_BASE_S)
    for _ in range(RETRIES):  # a busy machine: the best of the tries decides
        if times[sizes[-1]] < MAX_RATIO * base:
            break
        limit = STEP_TIMEOUT_RATIO * times[sizes[-2]] + STEP_ALLOWANCE_S
        times[sizes[-1]] = min(times[sizes[-1]], worker.time(target, unit, sizes[-1], limit, why))
    ratio = times[sizes[-1]] / base
    assert ratio < MAX_RATIO, (f"{target} of {name!r}: {times[sizes[-1]]:.3f} s at {sizes[-1]:,} characters vs "
                               f"{times[sizes[-2]]:.3f} s at {sizes[-2]:,} (counted as {base:.3f} s), {ratio:.1f}× "
                               "(linear is ~10×)")
