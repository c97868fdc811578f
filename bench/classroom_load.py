"""A classroom opening one link at once: N sessions against a real server, no browser.

Each session speaks Streamlit's own protocol over a WebSocket, as the browser
does: it sends one ``BackMsg`` asking to run the page with the link's query
string and reads the server's ``ForwardMsg`` stream until the run finishes. What a
browser does on top (drawing, JavaScript) costs the *browser*, not the server, so
this measures what the server spends per view. It prints, for N = 1, 10 and 30
sessions at once:

* **server CPU per view**: CPU seconds of the server and its child processes
  during the wave, divided by N (read from ``/proc``);
* the median and worst **time to the last delta** (the last page element);
* the bytes each view received.

Two waves per N: everyone opens the **same link** (its map cached after the first
view), and everyone opens a **different class** (each map computed: the queue
shares the model between them). Beside them, measured in the same run: the floor
of a view, one session alone on a cached link, and the model's own cost of one
vanilla map (forward + backward in this process).

    python bench/classroom_load.py                 # starts `streamlit run app.py` itself
    python bench/classroom_load.py --url http://host:8501 --pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LINK = "sample=chelsea&method=vanilla"
CLASSES = list(range(280, 400))  # distinct ImageNet classes for the "different class" waves


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def family_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (decoding workers, checks)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


async def view(url: str, query: str, timeout: float = 600) -> tuple[float, int]:
    """Open one session on ``query``: ``(seconds to the last delta, bytes received)``."""
    start = time.monotonic()
    last, received = start, 0
    async with websockets.connect(url.replace("http", "ws", 1) + "/_stcore/stream",
                                  subprotocols=["streamlit"], max_size=None,
                                  origin=url) as ws:
        message = BackMsg()
        message.rerun_script.query_string = query
        await ws.send(message.SerializeToString())
        while True:
            data = await asyncio.wait_for(ws.recv(), timeout)
            received += len(data)
            forward = ForwardMsg()
            forward.ParseFromString(data)
            kind = forward.WhichOneof("type")
            if kind == "delta":
                last = time.monotonic()
            elif kind == "script_finished" and forward.script_finished in (
                    ForwardMsg.FINISHED_SUCCESSFULLY,
                    ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                return last - start, received


async def wave(url: str, pid: int, queries: list[str]) -> dict:
    before = family_cpu(pid)
    results = await asyncio.gather(*(view(url, q) for q in queries))
    cpu = family_cpu(pid) - before
    times = [seconds for seconds, _ in results]
    return {"n": len(queries), "cpu_per_view": cpu / len(queries),
            "median": statistics.median(times), "worst": max(times),
            "bytes": statistics.median(size for _, size in results)}


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, SALIENCY_STUDIO_OFFLINE="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # the warm-up line: the model is loaded and traced
        line = process.stdout.readline()
        if "loaded and traced" in line or not line:
            break
    for _ in range(120):
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return process, url
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not start")


def model_floor(repeats: int = 5) -> float:
    """Seconds of one vanilla map (forward + backward) on the default model, here."""
    import numpy as np

    from saliency_core.methods import Target
    from saliency_core.pipeline import load_classifier

    classifier, _ = load_classifier("efficientnet_lite0")
    image = np.random.default_rng(0).uniform(0, 255, (1, *classifier.input_size, 3))
    classifier.gradients(image.astype(np.float32), Target(0))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.gradients(image.astype(np.float32), Target(1))
        best = min(best, time.perf_counter() - start)
    return best


async def run(url: str, pid: int, sizes: list[int]) -> list[tuple[str, dict]]:
    rows = []
    await view(url, LINK)  # the link's map is computed and cached once
    rows.append(("floor: one view of a cached link", await wave(url, pid, [LINK])))
    offset = 0
    for n in sizes:
        rows.append((f"same link, {n} at once", await wave(url, pid, [LINK] * n)))
        queries = [f"sample=chelsea&method=vanilla&class={c}"
                   for c in CLASSES[offset:offset + n]]
        offset += n
        rows.append((f"different classes, {n} at once", await wave(url, pid, queries)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--pid", type=int, help="its process id (for CPU readings)")
    parser.add_argument("--sizes", default="1,10,30")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average at the start {load_average()}")
    process = None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
        if pid is None:
            raise SystemExit("--pid is needed with --url (CPU is read from /proc)")
    else:
        started = time.monotonic()
        process, url = start_server()
        pid = process.pid
        print(f"server ready (model loaded and traced) {time.monotonic() - started:.1f} s "
              "after it started")
    try:
        rows = asyncio.run(run(url, pid, [int(n) for n in args.sizes.split(",")]))
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
    floor = model_floor()
    print()
    print("| wave | server CPU per view | time to last delta, median | worst | bytes per view |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in rows:
        print(f"| {name} | {row['cpu_per_view']:.3f} s | {row['median']:.2f} s | "
              f"{row['worst']:.2f} s | {row['bytes'] / 1e6:.2f} MB |")
    print(f"| floor: one vanilla map (forward + backward) in this process | {floor:.3f} s "
          "| | | |")
    print(f"\nload average at the end {load_average()}")


if __name__ == "__main__":
    main()
