"""What compressing a response costs: size and CPU per coding and level.

For a deterministic ~100 KB HTML page (a table of rows with varying text, not one
repeated byte), prints for each coding and setting the compressed size, the ratio
to the original, and the CPU time per response (``time.process_time`` over many
repetitions) for two ways of feeding the encoder:

  - streamed: 16 KiB chunks, flushed after each (what a compressing route does with
    a body the backend sends in 16 KiB reads);
  - whole: the body in one chunk, one flush.

Uses the proxy's own encoders (h2proxy.compression.encoders), so the figures are
those of the parameters the proxy runs with (br quality 4 and zstd level 3, both
with 256 KiB windows; gzip at the route's level). Run from the repository root:

    PYTHONPATH=src python bench/compression_cost.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time

from h2proxy.compression.encoders import new_encoder

#: Size of a streamed chunk, as the upstream side reads them.
CHUNK = 16 * 1024
#: gzip levels measured (6 is the default).
GZIP_LEVELS = (1, 6, 9)


def html_page(size: int = 100_000) -> bytes:
    """A deterministic HTML page of about C{size} bytes with varying text."""
    words = ("proxy", "stream", "window", "header", "origin", "client", "request", "budget", "reload",
             "worker", "gateway", "table", "ranking", "priority", "latency")
    rows = []
    index = 0
    total = 0
    while total < size:
        text = " ".join(words[(index * 7 + k * 3) % len(words)] for k in range(3 + index % 9))
        row = (f'<tr id="r{index}"><td class="num">{index}</td><td><a href="/item/{index * 7919 % 100003}">'
               f"{text}</a></td><td>{(index * 31) % 997}.{index % 100:02d}</td></tr>\n")
        rows.append(row)
        total += len(row)
        index += 1
    return ("<!doctype html>\n<html><head><title>Report</title></head><body><table>\n"
            + "".join(rows) + "</table></body></html>\n").encode()


def encode(coding: str, level: int, body: bytes, chunk: int) -> bytes:
    """C{body} encoded in chunks of C{chunk} bytes, each flushed."""
    encoder = new_encoder(coding, level)
    parts = [encoder.compress(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    parts.append(encoder.finish())
    return b"".join(parts)


def cpu_us(coding: str, level: int, body: bytes, chunk: int, repeat: int) -> float:
    """CPU microseconds per response, the best of three runs of C{repeat}."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeat):
            encode(coding, level, body, chunk)
        best = min(best, (time.process_time() - start) / repeat)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=100, help="responses per timing run (default 100)")
    args = parser.parse_args()
    body = html_page()
    print(f"body: {len(body)} bytes of HTML; streamed = {CHUNK // 1024} KiB chunks flushed each; "
          f"CPU = best of 3 runs of {args.repeat}")
    print(f"{'coding':<10}{'size':>9}{'ratio':>8}{'streamed size':>15}{'CPU streamed':>14}{'CPU whole':>11}")
    settings = [("gzip", level, f"gzip -{level}") for level in GZIP_LEVELS] + [("br", 6, "br q4"), ("zstd", 6, "zstd 3")]
    for coding, level, label in settings:
        whole = encode(coding, level, body, len(body))
        streamed = encode(coding, level, body, CHUNK)
        print(f"{label:<10}{len(whole):>9}{len(whole) / len(body):>8.3f}{len(streamed):>15}"
              f"{cpu_us(coding, level, body, CHUNK, args.repeat):>11.0f} µs"
              f"{cpu_us(coding, level, body, len(body), args.repeat):>8.0f} µs")


if __name__ == "__main__":
    main()
