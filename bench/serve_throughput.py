"""Serving throughput: aggregate generated tokens/s, time to first token and inter-token latency
at 1, 4 and 16 concurrent streams, with continuous batching on and off.

    python bench/serve_throughput.py [--model RUN] [--max-tokens 128] [--requests-per-stream 2] [--safety]

The server is `luoxia serve` in its own process (open access on 127.0.0.1, a temporary data
directory); the clients are asyncio + httpx in this one, streaming `/v1/completions` (one SSE event
per decoded piece). Model: ``--model``, else ``runs/demo-pydoc`` (what `make demo` trains), else the
`make demo` recipe trained here for 60 steps (speed does not depend on how well it is trained).
Safety (moderation, PII redaction, watermark) is off unless ``--safety``: with it on, text is
released sentence by sentence, so inter-token latency would measure sentences. Each level runs
``--requests-per-stream`` requests per client back to back, sampling at temperature 1 with
end-of-text allowed (tokens are counted as the model's tokenizer counts the returned text).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def ensure_model(model: str | None, workdir: Path) -> str:
    if model:
        return model
    if (REPO / "runs" / "demo-pydoc" / "model.safetensors").is_file():
        return str(REPO / "runs" / "demo-pydoc")
    from luoxia.registry import load_recipe
    from luoxia.train.lm import train_lm

    out = workdir / "pydoc"
    train_lm(load_recipe("configs/lm/pydoc.yaml", [f"out_dir={out}", "max_steps=60", "progress=false"]))
    return str(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str, batching: bool, safety: bool, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "luoxia.cli", "serve", "--model", model, "--port", str(port), "--open-access",
               "--data-dir", str(data_dir), "--device", "cpu", "--batching" if batching else "--no-batching",
               "--safety" if safety else "--no-safety"]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")


async def one_stream(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int, seed: int) -> dict:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 1.0, "seed": seed, "stream": True}
    started = time.perf_counter()
    arrivals, text = [], ""
    async with client.stream("POST", url + "/v1/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            piece = json.loads(line[6:])["choices"][0]["text"]
            if piece:
                arrivals.append(time.perf_counter())
                text += piece
    return {"ttft": arrivals[0] - started if arrivals else None,
            "gaps": [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)], "text": text}


async def run_level(url: str, streams: int, requests: int, max_tokens: int, prompts: list[str]) -> list[dict]:
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=streams + 4)) as client:
        async def client_loop(index: int) -> list[dict]:
            return [await one_stream(client, url, prompts[(index + r) % len(prompts)], max_tokens,
                                     seed=1000 * index + r) for r in range(requests)]

        results = await asyncio.gather(*(client_loop(i) for i in range(streams)))
    return [r for per_client in results for r in per_client]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 2) if len(values) > 1 \
        else round(values[0] * 1000, 2)


def main() -> None:
    from luoxia.generate.load import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--requests-per-stream", type=int, default=2)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--safety", action="store_true")
    args = parser.parse_args()
    prompts = ["The return statement", "A class definition", "Exceptions are raised", "The import system"]
    result = {"benchmark": "serve_throughput", "max_tokens": args.max_tokens, "safety": args.safety,
              "requests_per_stream": args.requests_per_stream}
    with tempfile.TemporaryDirectory() as tmp:
        model = ensure_model(args.model, Path(tmp))
        tokenizer = load_tokenizer(model)
        result["model"] = model
        for batching in (True, False):
            server, url = start_server(model, batching, args.safety, Path(tmp) / f"data-{batching}")
            try:
                for streams in args.levels:
                    started = time.perf_counter()
                    runs = asyncio.run(run_level(url, streams, args.requests_per_stream, args.max_tokens, prompts))
                    wall = time.perf_counter() - started
                    tokens = sum(len(tokenizer.encode(r["text"])) for r in runs if r["text"])
                    gaps = [g for r in runs for g in r["gaps"]]
                    ttfts = [r["ttft"] for r in runs if r["ttft"] is not None]
                    result[f"{'batching' if batching else 'sequential'}_{streams}"] = {
                        "tokens_per_s": round(tokens / wall, 1), "tokens": tokens, "requests": len(runs),
                        "wall_s": round(wall, 2), "ttft_ms_p50": percentile(ttfts, 50),
                        "ttft_ms_p99": percentile(ttfts, 99), "itl_ms_p50": percentile(gaps, 50),
                        "itl_ms_p99": percentile(gaps, 99)}
            finally:
                server.terminate()
                server.wait(timeout=30)
    one = result.get("batching_1", {}).get("tokens_per_s")
    top = result.get(f"batching_{max(args.levels)}", {}).get("tokens_per_s")
    if one and top:
        result["speedup_at_max_streams_vs_one"] = round(top / one, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
