"""Measure the gateway's cost against the limit: gateway vs. the emulator called directly vs. a plain
mitmdump (no addon) forwarding to it, all on loopback, bounded in time and count.

    scripts/bench                     # full run (about 4 minutes), writes bench-results/
    scripts/bench --quick             # shorter cells, for a smoke run
    scripts/bench --no-usage          # the gateway without its usage ledger (on by default, as metrics)
    scripts/bench --no-lean-dispatch  # the gateway with mitmproxy's own hook dispatch (ag_lean_dispatch off)
    scripts/bench --redis             # the gateway with its state on a local redis-server (ag_state_url),
                                      # and two such gateways side by side ("2 gateways", load split)
    scripts/bench --processes 5       # five fresh (gateway, plain mitmdump) pairs, one after another
                                      # (default 3), each taking its share of every cell's rounds

What it measures (see README "Performance"): non-stream requests/s and p50/p99 latency at concurrency
1, 16 and 64, through chat completions and through the Anthropic Messages API (/v1/messages); streaming
time to first chunk (TTFC) and SSE events/s with 64 concurrent streams; TTFC of a
stream whose first attempt got a 429; proxy CPU and peak RSS; RSS after 10,000 requests. It prints a
markdown table with ratios and writes a PNG chart (matplotlib, from the "bench" extra).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reuse the test harness: one way to start emulator and gateway
from antigravity_gw.sse import SSEDecoder  # noqa: E402
from antigravity_gw.upstream.policy import MIN_RATE_LIMIT_COOLDOWN  # noqa: E402
from support.emulator import Emulator  # noqa: E402
from support.gateway import Gateway, free_port, mitm_tool, write_account  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402

MODEL = "gemini-2.5-flash"
CHAT_BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "ping"}]})
MESSAGES_BODY = orjson.dumps({"model": MODEL, "max_tokens": 64,
                              "messages": [{"role": "user", "content": "ping"}]})
MESSAGES_TARGET = "gateway /v1/messages"
GEMINI_BODY = orjson.dumps({"contents": [{"role": "user", "parts": [{"text": "ping"}]}]})
STREAM_EVENTS = 300
STREAM_GAP_MS = 10
# The project's targets (DEVELOPERS.md): against a plain mitmdump forwarding the same requests.
MIN_RPS_RATIO = 0.8  # requests/s at c=16
MIN_RPS_RATIO_SHARED = 0.7  # the same with the state on Redis (--redis: one round trip per request)
MAX_ADDED_LATENCY_RATIO = 1.2  # latency added over a direct call, at c=1
BIG_EVENT_BYTES = 4 << 20  # an image answer's event: one 4 MiB line
BIG_EVENT_CHUNK = 16 << 10  # as TCP reads hand it over
MAX_BIG_EVENT_MS = 10.0


def big_event_decode_ms(repeats: int = 7) -> float:
    """Event-loop time to decode one 4 MiB SSE event fed in 16 KiB chunks (median of ``repeats``)."""
    raw = b'data: {"inlineData":"' + b"A" * BIG_EVENT_BYTES + b'"}\r\n\r\n'
    chunks = [raw[i : i + BIG_EVENT_CHUNK] for i in range(0, len(raw), BIG_EVENT_CHUNK)]
    samples = []
    for _ in range(repeats):
        decoder = SSEDecoder()
        started = time.perf_counter()
        events = [event for chunk in chunks for event in decoder.feed(chunk)]
        samples.append((time.perf_counter() - started) * 1000)
        assert len(events) == 1 and len(events[0].data) == len(raw) - 10
    return statistics.median(samples)


@dataclass(kw_only=True)
class Timed:
    """A measurement over wall time with the proxy's CPU time in it; slices of one add up."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def cpu(self) -> float:
        """Proxy CPU seconds per wall second (1.0 = one core)."""
        return self.cpu_seconds / self.seconds if self.seconds else 0.0

    def absorb(self, part: Timed) -> None:
        self.seconds += part.seconds
        self.cpu_seconds += part.cpu_seconds


@dataclass
class Cell(Timed):
    target: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def absorb(self, part: Cell) -> None:
        super().absorb(part)
        self.requests += part.requests
        self.errors += part.errors
        self.latencies += part.latencies

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


class Proc:
    """CPU time and memory of a process, read from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks

    def memory_mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")


async def load(session: aiohttp.ClientSession, url: str | tuple[str, ...], body: bytes,
               headers: dict[str, str], concurrency: int, seconds: float, max_requests: int,
               proc: Proc | None, target: str) -> Cell:
    """``url``: one, or several that the workers take turns on (gateways side by side)."""
    cell = Cell(target, concurrency)
    urls = (url,) if isinstance(url, str) else url
    deadline = time.perf_counter() + seconds
    cpu0 = proc.cpu_seconds() if proc else 0.0
    start = time.perf_counter()

    async def worker(url: str) -> None:
        while time.perf_counter() < deadline and cell.requests + cell.errors < max_requests:
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                cell.requests += 1
                cell.latencies.append(time.perf_counter() - t0)
            else:
                cell.errors += 1

    await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(concurrency)))
    cell.seconds = time.perf_counter() - start
    if proc:
        cell.cpu_seconds = proc.cpu_seconds() - cpu0
    return cell


@dataclass
class StreamStats(Timed):
    ttfc: list[float] = field(default_factory=list)
    events: int = 0

    def absorb(self, part: StreamStats) -> None:
        super().absorb(part)
        self.ttfc += part.ttfc
        self.events += part.events

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


async def one_stream(session: aiohttp.ClientSession, url: str, body: bytes, stats: StreamStats) -> None:
    t0 = time.perf_counter()
    first = True
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
        async for line in resp.content:
            if line.startswith(b"data:") and line.strip() != b"data: [DONE]":
                if first:
                    stats.ttfc.append(time.perf_counter() - t0)
                    first = False
                stats.events += 1


async def streams(session: aiohttp.ClientSession, url: str, body: bytes, n: int,
                  proc: Proc | None) -> StreamStats:
    stats = StreamStats()
    cpu0 = proc.cpu_seconds() if proc else 0.0
    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one_stream(session, url, body, stats) for _ in range(n))), 120)
    stats.seconds = time.perf_counter() - t0
    if proc:
        stats.cpu_seconds = proc.cpu_seconds() - cpu0
    return stats


def start_plain_mitmdump(emulator: Emulator, confdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([mitm_tool(), "--mode", f"reverse:{emulator.url}@{port}",
                             "--set", "listen_host=127.0.0.1", "--set", "connection_strategy=lazy",
                             "--set", "flow_detail=0", "--set", f"confdir={confdir}", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("plain mitmdump did not start")


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="ag-bench-"))
    confdir = tmp / "conf"
    accounts = tmp / "accounts"
    accounts.mkdir()
    write_account(accounts, "k1", api_key="AIza-bench-1")
    write_account(accounts, "k2", api_key="AIza-bench-2")
    results: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
                                f"Python {platform.python_version()}", "big_event_ms": big_event_decode_ms(),
                     "usage": "usage ledger off (--no-usage), metrics on" if args.no_usage
                     else "usage ledger and metrics on",
                     "dispatch": "mitmproxy's own hook dispatch (--no-lean-dispatch)" if args.no_lean_dispatch
                     else "lean hook dispatch (ag_lean_dispatch, mitm/dispatch.py)",
                     "processes": args.processes}
    scheduling = "round_robin"
    redis = None
    if args.redis:
        # sticky, so that every request claims its conversation in Redis: the round trip a shared pool adds
        redis, scheduling = RedisServer().start(), "sticky"
        results["usage"] += f"; state on redis-server {redis.url} (ag_state_url), ag_scheduling=sticky"
    try:
        with Emulator() as emu:
            emu.add_rule(match={"model": "bench-stream"}, reply={
                "text": ["x" * 20] * STREAM_EVENTS, "chunk_delay_ms": STREAM_GAP_MS,
                "split": False})  # one TCP write per event, as Google sends them (tests cover split events)
            # The usage ledger (ag_data_dir/usage.sqlite3) and the metrics are on, as by default, unless
            # --no-usage.
            options = {"flow_detail": 0, "ag_scheduling": scheduling, "ag_usage": not args.no_usage,
                       "ag_lean_dispatch": not args.no_lean_dispatch,
                       **({"ag_state_url": redis.url} if redis else {})}
            # --processes N: N fresh pairs (gateway, plain mitmdump), one after another, each taking its share
            # of every cell's rounds. Processes of the same code differ by up to ±10% in requests/s for their
            # whole life (memory layout, hash seed, where the scheduler puts them), which one pair turns into
            # the ratio; pyperf runs its benchmarks in many worker processes for the same reason. One after
            # another, not side by side: only the pair being measured runs.
            rounds = -(-args.rounds // args.processes)
            rounds += rounds % 2  # even: both orders of the targets equally often
            cells: list[Cell] = []
            for k in range(args.processes):
                pair = ProcessPair(emu, accounts, confdir, options, tmp / f"pair{k}",
                                   second_gateway=redis is not None)
                connector = aiohttp.TCPConnector(limit=0)
                with pair:
                    async with aiohttp.ClientSession(connector=connector) as session:
                        cells, ratio = await measure_cells(args, session, emu, pair, rounds, cells)
                        results.setdefault("pair_ratios", []).append(ratio)
                        if k == args.processes - 1:  # the stream, retry and RSS checks: on the last gateway,
                            # with the connections the cells left open, as a client pool would have them
                            results.update(await measure_streams(args, session, emu, pair.gateway))
            results["cells"] = cells
    finally:
        if redis is not None:
            redis.stop()
    return results


class ProcessPair:
    """One gateway and one plain mitmdump (and, for --redis, a second gateway on the same Redis), started
    on entering and stopped on leaving."""

    def __init__(self, emu: Emulator, accounts: Path, confdir: Path, options: dict, data_dir: Path, *,
                 second_gateway: bool) -> None:
        def gateway(name: str) -> Gateway:  # each its own ledger (ag_data_dir)
            return Gateway(emu, accounts, confdir=confdir,
                           options={**options, "ag_data_dir": str(data_dir / name)})

        self.gateway = gateway("gateway")
        # --redis: a second instance on the same Redis, for the "2 gateways" row
        self.gateway2 = gateway("gateway2") if second_gateway else None
        self.emu, self.confdir = emu, confdir
        self.plain: subprocess.Popen[bytes] | None = None
        self.plain_port = 0

    def __enter__(self) -> ProcessPair:
        try:
            self.gateway.start()
            if self.gateway2 is not None:
                self.gateway2.start()
            self.plain, self.plain_port = start_plain_mitmdump(self.emu, self.confdir)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.plain is not None:
            self.plain.terminate()
            self.plain.wait(10)
        self.gateway.stop()
        if self.gateway2 is not None:
            self.gateway2.stop()


async def measure_cells(args: argparse.Namespace, session: aiohttp.ClientSession, emu: Emulator,
                        pair: ProcessPair, rounds: int, cells: list[Cell]) -> tuple[list[Cell], float]:
    """This pair's share of every non-stream cell: ``rounds`` slices per cell, absorbed into ``cells``
    (made on the first pair's call); with this pair's gateway / plain mitmdump requests/s at c=16."""
    gw, gw2 = pair.gateway, pair.gateway2
    assert gw.proc is not None and pair.plain is not None
    gw_proc = Proc(gw.proc.pid)
    direct_url = f"{emu.url}/v1beta/models/{MODEL}:generateContent"
    gemini_headers = {"content-type": "application/json", "x-goog-api-key": "AIza-bench-1"}
    chat_headers = {"content-type": "application/json"}
    messages_headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    plain_url = f"http://127.0.0.1:{pair.plain_port}/v1beta/models/{MODEL}:generateContent"
    targets: tuple[tuple[str, str | tuple[str, ...], Proc | None, bytes, dict[str, str]], ...] = (
        ("direct", direct_url, None, GEMINI_BODY, gemini_headers),
        ("plain mitmdump", plain_url, Proc(pair.plain.pid), GEMINI_BODY, gemini_headers),
        ("gateway", gw.url + "/v1/chat/completions", gw_proc, CHAT_BODY, chat_headers),
        (MESSAGES_TARGET, gw.url + "/v1/messages", gw_proc, MESSAGES_BODY, messages_headers))
    if gw2 is not None:  # two instances on one Redis, the load split between them (their CPU not shown)
        both = (gw.url + "/v1/chat/completions", gw2.url + "/v1/chat/completions")
        targets += (("2 gateways", both, None, CHAT_BODY, chat_headers),)
    if not cells:
        cells = [Cell(target, c) for c in (1, 16, 64) for target, *_ in targets]
    by = {(cell.target, cell.concurrency): cell for cell in cells}
    mine = {key: Cell(*key) for key in by}  # this pair's part alone
    slice_seconds, slice_requests = args.seconds / args.rounds, args.max_requests // args.rounds
    for _, url, _, body, headers in targets:
        await load(session, url, body, headers, 4, 1.0, 200, None, "warm-up")
    # Targets take turns in short slices, in an order that flips every round, so a slow moment of this
    # shared machine (they last seconds) hits them alike instead of deciding a ratio.
    for c in (1, 16, 64):
        for r in range(rounds):
            for target, url, proc, body, headers in targets if r % 2 == 0 else reversed(targets):
                if target == MESSAGES_TARGET and r % 2:  # half the rounds: a shorter bench
                    continue
                part = await load(session, url, body, headers, c, slice_seconds, slice_requests, proc, target)
                by[(target, c)].absorb(part)
                mine[(target, c)].absorb(part)
    return cells, mine[("gateway", 16)].rps / mine[("plain mitmdump", 16)].rps


async def measure_streams(args: argparse.Namespace, session: aiohttp.ClientSession, emu: Emulator,
                          gw: Gateway) -> dict:
    """Time to first chunk (one stream at a time, after a retry), SSE events/s and the RSS soak."""
    assert gw.proc is not None
    gw_proc = Proc(gw.proc.pid)
    chat_headers = {"content-type": "application/json"}
    stream_body = orjson.dumps({"model": "bench-stream", "stream": True,
                                "messages": [{"role": "user", "content": "go"}]})
    single, direct_single = StreamStats(), StreamStats()
    gw_chat = gw.url + "/v1/chat/completions"
    model_stream_body = stream_body.replace(b"bench-stream", MODEL.encode())
    direct_stream = f"{emu.url}/v1beta/models/{{}}:streamGenerateContent?alt=sse&key=AIza-bench-1"
    # One stream at a time on a client connection of its own, kept alive as a client's is. Not on the
    # load session: its pool hands out its ~64 idle connections in turn (aiohttp's is FIFO), so each
    # stream would come on a connection that never streamed, and a connection's first stream pays
    # mitmproxy's connection to the relay. That cost has its own row (new_conn).
    async with aiohttp.ClientSession() as one:
        new_conn, direct_new_conn = StreamStats(), StreamStats()
        for _ in range(20):  # alternating, so both medians see the same moments of the machine
            await one_stream(one, gw_chat, model_stream_body, single)
            await one_stream(one, direct_stream.format(MODEL), GEMINI_BODY, direct_single)
        for _ in range(10):  # each on a new client connection (to the gateway, and to the emulator)
            for url, body, stats in ((gw_chat, model_stream_body, new_conn),
                                     (direct_stream.format(MODEL), GEMINI_BODY, direct_new_conn)):
                async with aiohttp.ClientSession() as fresh:
                    await one_stream(fresh, url, body, stats)
        # The emulator paces each stream (STREAM_GAP_MS per event), so the same streams read directly show
        # the ceiling this machine allows; the two take turns for the same reason as the cells above.
        many, many_direct = StreamStats(), StreamStats()
        for _ in range(2):
            many.absorb(await streams(session, gw_chat, stream_body, args.streams, gw_proc))
            many_direct.absorb(await streams(
                session, direct_stream.format("bench-stream"), GEMINI_BODY, args.streams, None))
        retried = StreamStats()
        for _ in range(5):
            # the first attempt of the next stream, whichever account it picks, gets a 429
            emu.add_rule(match={"model": MODEL, "rpc": "streamGenerateContent"}, times=1,
                         reply={"error": {"kind": "rate_limited", "retry_delay": "0.001s"}})
            await one_stream(one, gw_chat, model_stream_body, retried)
            # That 429 cooled its account for the minimum cooldown. Let it pass: otherwise the next
            # sample's 429 finds the other account cooling too and measures a grace wait (~1 s), not one
            # retry.
            await asyncio.sleep(MIN_RATE_LIMIT_COOLDOWN + 0.1)
    rss_warm = gw_proc.memory_mb("VmRSS")
    soak = await load(session, gw_chat, CHAT_BODY, chat_headers, 16, args.soak_seconds,
                      args.soak_requests, gw_proc, "soak")
    rss_after = gw_proc.memory_mb("VmRSS")
    return {"ttfc_gateway_ms": statistics.median(single.ttfc) * 1000,
            "ttfc_direct_ms": statistics.median(direct_single.ttfc) * 1000,
            "ttfc_new_conn_ms": (statistics.median(new_conn.ttfc)
                                 - statistics.median(direct_new_conn.ttfc)) * 1000,
            "ttfc_retried_ms": statistics.median(retried.ttfc) * 1000 if retried.ttfc else float("nan"),
            "streams": many, "streams_direct": many_direct, "stream_count": args.streams, "soak": soak,
            "rss_warm_mb": rss_warm, "rss_after_mb": rss_after,
            "rss_peak_mb": gw_proc.memory_mb("VmHWM")}


def report(r: dict) -> str:
    cells: list[Cell] = r["cells"]
    by = {(c.target, c.concurrency): c for c in cells}
    lines = [f"Machine: {r['machine']}", f"Gateway: {r.get('usage', '')}; {r.get('dispatch', '')}",
             f"Processes: {r['processes']} fresh pair(s) (gateway, plain mitmdump), one after another; the "
             "cells pool their slices", "",
             "| target | c | req/s | p50 ms | p99 ms | errors | proxy CPU |", "|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c.target} | {c.concurrency} | {c.rps:.0f} | {c.pct(0.5):.2f} | {c.pct(0.99):.2f} | "
                     f"{c.errors} | {c.cpu * 100:.0f}% |")
    g16, p16 = by[("gateway", 16)], by[("plain mitmdump", 16)]
    g1, p1, d1 = by[("gateway", 1)], by[("plain mitmdump", 1)], by[("direct", 1)]
    added_gw, added_plain = g1.pct(0.5) - d1.pct(0.5), p1.pct(0.5) - d1.pct(0.5)
    s, ev_rate, direct_rate = r["streams"], r["streams"].rate, r["streams_direct"].rate
    two = by.get(("2 gateways", 16))
    side_by_side = [("2 gateways on one Redis / 1 gateway req/s at c=16", f"{two.rps / g16.rps:.2f}",
                     "(info)", True)] if two else []
    least = MIN_RPS_RATIO_SHARED if two else MIN_RPS_RATIO  # "2 gateways" rows: a --redis run
    m16, m1 = by[(MESSAGES_TARGET, 16)], by[(MESSAGES_TARGET, 1)]
    added_messages = m1.pct(0.5) - d1.pct(0.5)
    checks = [
        ("gateway / plain mitmdump req/s at c=16", f"{g16.rps / p16.rps:.2f}", f">= {least}",
         g16.rps / p16.rps >= least),
        (f"the same, each process pair alone ({len(r['pair_ratios'])})",
         ", ".join(f"{x:.2f}" for x in r["pair_ratios"]), "(info)", True),
        ("gateway / direct req/s at c=16", f"{g16.rps / by[('direct', 16)].rps:.3f}", "(info)", True),
        ("latency added at c=1: gateway / plain mitmdump", f"{added_gw / added_plain:.2f}"
         f" ({added_gw:.2f} ms vs {added_plain:.2f} ms)", f"<= {MAX_ADDED_LATENCY_RATIO}",
         added_gw / added_plain <= MAX_ADDED_LATENCY_RATIO),
        ("gateway /v1/messages / plain mitmdump req/s at c=16", f"{m16.rps / p16.rps:.2f}", f">= {least}",
         m16.rps / p16.rps >= least),
        ("latency added at c=1: gateway /v1/messages / plain mitmdump", f"{added_messages / added_plain:.2f}"
         f" ({added_messages:.2f} ms vs {added_plain:.2f} ms)", f"<= {MAX_ADDED_LATENCY_RATIO}",
         added_messages / added_plain <= MAX_ADDED_LATENCY_RATIO),
        ("first-chunk overhead (gateway TTFC - direct TTFC)",
         f"{r['ttfc_gateway_ms'] - r['ttfc_direct_ms']:.2f} ms", "<= 5 ms",
         r["ttfc_gateway_ms"] - r["ttfc_direct_ms"] <= 5),
        ("retried stream: first chunk after the retry (TTFC retried - TTFC normal)",
         f"{r['ttfc_retried_ms'] - r['ttfc_gateway_ms']:.2f} ms", "<= 50 ms",
         r["ttfc_retried_ms"] - r["ttfc_gateway_ms"] <= 50),
        ("first-chunk overhead of a stream on a new client connection (mitmproxy connects to the relay)",
         f"{r['ttfc_new_conn_ms']:.2f} ms", "(info)", True),
        (f"SSE events/s, {r['stream_count']} concurrent streams",
         f"{ev_rate:.0f} (direct {direct_rate:.0f}: the emulator's pacing; "
         f"TTFC p50 {statistics.median(s.ttfc) * 1000:.0f} ms, proxy CPU {s.cpu * 100:.0f}%)",
         ">= 5000", ev_rate >= 5000),
        (f"RSS after warm-up / after {r['soak'].requests} more requests", f"{r['rss_warm_mb']:.0f} / "
         f"{r['rss_after_mb']:.0f} MB (peak {r['rss_peak_mb']:.0f} MB)", "flat (< +10%)",
         r["rss_after_mb"] <= r["rss_warm_mb"] * 1.10),
        (f"SSE decoder: one {BIG_EVENT_BYTES >> 20} MiB event fed in {BIG_EVENT_CHUNK >> 10} KiB chunks",
         f"{r['big_event_ms']:.2f} ms", f"<= {MAX_BIG_EVENT_MS:.0f} ms",
         r["big_event_ms"] <= MAX_BIG_EVENT_MS),
        *side_by_side,
    ]
    lines += ["", "| check | measured | target | ok |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {target} | {'yes' if ok else '**no**'} |"
              for name, value, target, ok in checks]
    return "\n".join(lines)


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells: list[Cell] = r["cells"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    targets = ["direct", "plain mitmdump", "gateway"]
    for i, conc in enumerate((1, 16, 64)):
        vals = [next(c.rps for c in cells if c.target == t and c.concurrency == conc) for t in targets]
        ax1.bar([x + i * 0.27 for x in range(3)], vals, width=0.27, label=f"c={conc}")
    ax1.set_xticks([x + 0.27 for x in range(3)], targets)
    ax1.set_yscale("log")
    ax1.set_ylabel("non-stream requests/s (log)")
    ax1.legend()
    for t in targets:
        ax2.plot([1, 16, 64], [next(c.pct(0.5) for c in cells if c.target == t and c.concurrency == k)
                               for k in (1, 16, 64)], marker="o", label=t)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("p50 latency ms (log)")
    ax2.legend()
    fig.suptitle(r["machine"])
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="duration of each non-stream cell")
    p.add_argument("--max-requests", type=int, default=20000, help="request cap of each non-stream cell")
    p.add_argument("--rounds", type=int, default=10, help="slices per cell, interleaved across targets")
    p.add_argument("--streams", type=int, default=64, help="concurrent streams")
    p.add_argument("--soak-requests", type=int, default=10000, help="requests of the RSS soak")
    p.add_argument("--soak-seconds", type=float, default=90.0, help="time cap of the RSS soak")
    p.add_argument("--processes", type=positive_int, default=3,
                   help="fresh pairs of a gateway and a plain mitmdump, measured one after another, each "
                        "taking its share of every cell's rounds (processes of the same code differ by up to "
                        "±10%% in requests/s for their whole life); the stream and RSS checks use the last")
    p.add_argument("--quick", action="store_true", help="short cells for a smoke run")
    p.add_argument("--no-usage", action="store_true",
                   help="run the gateway with ag_usage=false (no ledger; metrics stay on): the ledger's cost")
    p.add_argument("--no-lean-dispatch", action="store_true",
                   help="run the gateway with ag_lean_dispatch=false (mitmproxy's own hook dispatch): "
                        "what the lean dispatch saves")
    p.add_argument("--redis", action="store_true",
                   help="the gateway with its state on a local redis-server (ag_state_url, sticky)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.soak_requests, args.soak_seconds = 1.5, 3, 500, 10.0
    results = asyncio.run(run(args))
    text = report(results)
    print(text)
    args.out.mkdir(exist_ok=True)
    (args.out / "bench.md").write_text(text + "\n")
    try:
        chart(results, args.out / "bench.png")
        print(f"\nchart: {args.out / 'bench.png'}")
    except ImportError:
        print("\n(matplotlib not installed: no chart; run through scripts/bench)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
