"""Guard latency: absolute times of PII redaction and moderation on ordinary and adversarial texts,
and how `/health` answers while a large `/v1/redact` runs on a live server.

    python bench/guard_latency.py [--sizes 10000,100000,1000000] [--repeats 2] [--probes 20] [--no-classifier]

- ``redact`` (`luoxia.safety.pii.redact`), ``moderate_rules`` (`Moderator(classifier=None)`) and
  ``moderate`` (rules and the learned classifier) on each text at each size, best of ``--repeats``.
  Texts: ordinary prose with personal data in it (English and Chinese, seeded), and the adversarial
  inputs of tests/safety/test_linear_time.py ("a_"*, "1-"*, digit and dot runs, nested URLs, …).
  ``ratio`` is each input's time at the largest size over its time at the next one (linear: the size
  ratio; quadratic: its square).
- ``health``: a uvicorn server on 127.0.0.1 with no model (a temporary data directory, limits
  that admit the request); one client posts the largest
  adversarial text to `/v1/redact`, another probes `/health` ``--probes`` times meanwhile: the
  probes' median and max latency, and the redaction's own time and status. A redaction still
  running after ``--timeout`` seconds is reported as such (the process then exits at once).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn

from luoxia.safety.moderation import Moderator
from luoxia.safety.pii import redact
from luoxia.serve.app import create_app
from luoxia.serve.models import Models
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import Store

ADVERSARIAL = {"a_": "a_", "1-": "1-", "digits": "1234567890", "dots": "1.", "url-creds": "http://a:b@",
               "at": "a@", "key=": "key=", "spaces": " \t", "kill": "kill ", "zh": "怎么 制作",
               "mixed": "a_1-1.a@key=http://a:b@ 1３8\u200b ", "phone-punct": "1 -", "fullwidth": "１"}
SENTENCES = ["Contact amy.li@example.org about the invoice.", "Call me at +1 415 555 2671 tomorrow.",
             "我的电话是13812345678，身份证110105 19491231 002X。", "The server at 192.168.1.23 is down again.",
             "Deploy with https://deploy:Tr0ub4dor3x@git.example.com/repo today.",
             "The quarterly report is due on Friday; please review the figures.", "今天天气很好，我们去公园散步吧。",
             "Card 4111 1111 1111 1111 expires soon.", "How do I kill a stuck Python process?",
             "Meeting notes: budget approved, hiring paused, next review in May."]


def repeated(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def ordinary(size: int, rng: random.Random) -> str:
    """Seeded prose with personal data: sentences drawn at random until ``size`` characters."""
    pieces, length = [], 0
    while length < size:
        pieces.append(rng.choice(SENTENCES))
        length += len(pieces[-1]) + 1
    return " ".join(pieces)[:size]


def best_time(function: Callable[[str], object], text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - start)
    return round(min(times), 4)


def time_functions(sizes: list[int], repeats: int, classifier: bool, seed: int) -> dict:
    """Seconds per function, input and size; ``ratio``: largest size over the next one."""
    functions: dict[str, Callable[[str], object]] = {"redact": redact}
    rules = Moderator(classifier=None)
    functions["moderate_rules"] = lambda text: rules.moderate([text])
    if classifier:
        full = Moderator()
        full.moderate(["warm up"])
        functions["moderate"] = lambda text: full.moderate([text])
    inputs = {"ordinary": lambda size: ordinary(size, random.Random(seed)),
              **{name: (lambda size, unit=unit: repeated(unit, size)) for name, unit in ADVERSARIAL.items()}}
    report: dict = {}
    for function_name, function in functions.items():
        report[function_name] = {}
        for input_name, make in inputs.items():
            row = {str(size): best_time(function, make(size), repeats) for size in sizes}
            if len(sizes) > 1:
                row["ratio"] = round(row[str(sizes[-1])] / max(row[str(sizes[-2])], 1e-6), 1)
            report[function_name][input_name] = row
            print(f"{function_name} {input_name} {row}", file=sys.stderr, flush=True)
    return report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data_dir: Path, max_body: int) -> tuple[uvicorn.Server, threading.Thread, str, str]:
    # /v1/redact needs no model; limits raised so that the one large request is admitted
    settings = ServeSettings(data_dir=data_dir, max_body_bytes=max_body, max_input_chars=max_body,
                             max_total_chars=max_body, rate_limit_bytes_per_minute=max(4_000_000, max_body))
    _, key = Store(data_dir).create_key("bench")
    app = create_app(settings, models=Models(settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise SystemExit("guard_latency: the server did not start")
    return server, thread, f"http://127.0.0.1:{port}", key


def health_during_redaction(size: int, probes: int, timeout: float, name: str) -> dict:
    """/health latencies while one ``size``-character adversarial redaction runs."""
    text = repeated(ADVERSARIAL[name], size)
    body = json.dumps({"text": text}).encode()
    outcome: dict = {}
    with tempfile.TemporaryDirectory() as directory:
        server, thread, url, key = start_server(Path(directory), max_body=len(body) + 4096)

        def post() -> None:
            start = time.perf_counter()
            try:
                response = httpx.post(url + "/v1/redact", content=body, timeout=timeout,
                                      headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                outcome["status"] = response.status_code
            except httpx.TimeoutException:
                outcome["status"] = "timeout"
            outcome["redact_s"] = round(time.perf_counter() - start, 3)

        client = threading.Thread(target=post, daemon=True)
        client.start()
        time.sleep(0.2)  # the body is sent and the redaction has started
        latencies = []
        for _ in range(probes):
            start = time.perf_counter()
            try:
                httpx.get(url + "/health", timeout=timeout).raise_for_status()
                latencies.append(time.perf_counter() - start)
            except httpx.HTTPError:
                latencies.append(float("inf"))
            time.sleep(0.05)
        during = client.is_alive()
        client.join(timeout)
        if outcome.get("status") != "timeout" and not client.is_alive():
            server.should_exit = True
            thread.join(timeout=30)
    return {"input": name, "size": size, "probes": probes, "probes_while_redacting": during,
            "median_ms": round(statistics.median(latencies) * 1000, 1), "max_ms": round(max(latencies) * 1000, 1),
            **outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="text sizes in characters, comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one redaction or probe may take")
    parser.add_argument("--health-input", default="a_", choices=sorted(ADVERSARIAL))
    parser.add_argument("--no-classifier", action="store_true", help="skip moderation with the classifier")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    result: dict = {"benchmark": "guard_latency", "sizes": sizes, "repeats": args.repeats, "seed": args.seed,
                    "seconds": time_functions(sizes, args.repeats, not args.no_classifier, args.seed)}
    result["health"] = health_during_redaction(sizes[-1], args.probes, args.timeout, args.health_input)
    print(json.dumps(result, ensure_ascii=False), flush=True)
    if result["health"].get("status") == "timeout":
        os._exit(0)  # the server's worker thread is still redacting: do not wait for it


if __name__ == "__main__":
    main()
