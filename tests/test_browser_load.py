"""Issue 19 with a real server: no visitor can exhaust it, whatever the others do.

Each test starts ``streamlit run app.py`` with its own ``[limits]`` and drives
several headless-Chromium sessions at once. The server's memory and CPU are read
from ``/proc`` (the server and its child processes: decoding workers, checking
processes), never timed as assertions about speed.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request

import pytest
import safety_builders as build
from browser_support import SERVER_LOGS, SERVER_PIDS, launch_browser, run_server, screenshot

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]
OVERLAY = "[data-testid='stPlotlyChart'] .js-plotly-plot g.hm image"
GIB = 1 << 30


def status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def family(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its descendants that are still alive."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in family(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / tick


def healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/_stcore/health", timeout=10) as response:
        return response.read() == b"ok"


def upload_store_bytes(url: str) -> int:
    """What Streamlit's upload store holds, from its metrics endpoint."""
    with urllib.request.urlopen(url + "/_stcore/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'cache_memory_bytes\{cache_type="UploadedFileManager"[^}]*\} (\d+)',
                       text)
    return sum(int(v) for v in found)


def wait_until(condition, timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def assert_no_exception(page) -> None:
    shown = page.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.all_inner_texts()


@pytest.fixture(scope="module")
def browser():
    yield from launch_browser()


def new_page(browser, width=1280, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    return context, context.new_page()


def choose_upload(page) -> None:
    """Switch the image source to Upload, as a visitor does."""
    page.get_by_text("Upload", exact=True).click(timeout=180_000)
    page.get_by_text("Upload a photo to begin").wait_for(timeout=120_000)


def add_own_model(page, url: str, path) -> None:
    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stFileUploader']").filter(has_text="Model (.keras").locator(
        "[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(path))
    page.get_by_role("button", name="Add this model").click()
    page.get_by_text(f"Added {path.name}").wait_for(timeout=240_000)


# ------------------------------------------------------------------ the rows


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory):
    yield from run_server(tmp_path_factory, "job_memory_bytes = 2147483648\n"
                                            "activation_budget_bytes = 805306368")


def test_an_attention_model_with_smoothgrad_leaves_the_server_to_everyone(
        budget_server, browser, tmp_path):
    """One visitor's own attention model (accepted: its measured cost fits) computes
    SmoothGrad with 16 samples; meanwhile another visitor's Explore draws its map, the
    health check answers, and the server's memory rises by no more than its job budget."""
    url, pid = budget_server, SERVER_PIDS[budget_server]
    model = tmp_path / "attention.keras"
    model.write_bytes(build.attention_model_bytes(tmp_path, 2048, multi_head=True))
    heavy_context, heavy = new_page(browser)
    light_context, light = new_page(browser)
    try:
        heavy.goto(url + "/?sample=chelsea&method=smoothgrad&smoothgrad.samples=16")
        heavy.wait_for_selector(OVERLAY, timeout=180_000)
        baseline_kb = status_kb(pid, "VmRSS")
        add_own_model(heavy, url, model)
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")  # the server's peak from here on
        heavy.get_by_role("link", name="Explore").click()
        heavy.get_by_text("Computing SmoothGrad").first.wait_for(timeout=120_000)
        light.goto(url + "/?sample=coffee")  # while the attention model's job runs
        light.wait_for_selector(OVERLAY, timeout=180_000)
        assert_no_exception(light)
        assert healthy(url)
        heavy.wait_for_selector(OVERLAY, timeout=300_000)
        assert "model=custom%3A" in heavy.url  # the map is the own model's
        assert_no_exception(heavy)
        peak_kb = status_kb(pid, "VmHWM")
        rise = (peak_kb - baseline_kb) * 1024
        print(f"\nserver RSS {baseline_kb / 1024:.0f} MB before, peak {peak_kb / 1024:.0f} MB "
              f"during (rise {rise / 2**20:.0f} MB; job budget 2048 MB)")
        assert rise < 2 * GIB + 512 * 2**20  # the jobs' budget, plus the model and Python
        screenshot(heavy, "load-attention-smoothgrad")
    finally:
        heavy_context.close()
        light_context.close()


@pytest.fixture(scope="module")
def decode_server(tmp_path_factory):
    # The walkers' scan cap is raised so the file reaches the decoder, whose own time
    # limit is long: only cancellation can stop it within the test.
    yield from run_server(tmp_path_factory, "max_jpeg_scans = 1000000\n"
                                            "max_jpeg_markers = 10000000\n"
                                            "decode_timeout_seconds = 600")


def test_a_scan_bomb_decode_stops_when_its_visitor_closes_the_tab(decode_server, browser,
                                                                  tmp_path):
    url, pid = decode_server, SERVER_PIDS[decode_server]
    bomb = tmp_path / "scans.jpg"
    bomb.write_bytes(build.slow_scan_jpeg(30_000))
    context, page = new_page(browser)
    try:
        page.goto(url)
        page.wait_for_selector(OVERLAY, timeout=180_000)
        choose_upload(page)
        assert wait_until(lambda: cpu_rate(pid, 1.0) < 0.2, 120)  # idle after the warm-up
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(bomb))
        assert wait_until(lambda: cpu_rate(pid, 1.0) > 0.5, 60)  # the decoder is working
    finally:
        context.close()  # the visitor leaves
    closed = time.monotonic()
    assert wait_until(lambda: cpu_rate(pid, 1.0) < 0.2, 10, every=0.1)
    print(f"\nCPU back to idle {time.monotonic() - closed:.1f} s after the tab closed")
    assert healthy(url)


def test_a_map_stops_when_its_visitor_closes_the_tab(decode_server, browser):
    """A long RISE job (2000 forward passes, about 20 s on two cores) stops at its next
    batch once nobody waits for it: the server's CPU is idle again a few seconds after the
    tab closes, long before the map would end, and the log says it was cancelled. (A
    100-sample SmoothGrad takes about 5 s here: it could end by itself before the 2 s grace
    ran out.)"""
    url, pid = decode_server, SERVER_PIDS[decode_server]
    context, page = new_page(browser)
    try:
        page.goto(url + "/?sample=rocket&class=812&method=rise&rise.masks=2000")
        page.get_by_text("Computing RISE").first.wait_for(timeout=180_000)
        assert cpu_rate(pid, 1.0) > 0.5  # the job is running
    finally:
        context.close()
    closed = time.monotonic()
    assert wait_until(lambda: cpu_rate(pid, 1.0) < 0.2, 10, every=0.1)
    print(f"\nCPU back to idle {time.monotonic() - closed:.1f} s after the tab closed")
    assert healthy(url)
    # and the operator can see it in the server's log
    log = SERVER_LOGS[decode_server]
    assert wait_until(lambda: re.search(r"INFO saliency_core\.safety\.jobs: job \d+ "
                                        r"\(RISE.*\) cancelled after [0-9.]+ s: "
                                        r"nobody waits", log.read_text()), 10), \
        log.read_text()[-2000:]


def cpu_rate(pid: int, seconds: float) -> float:
    """Cores used by the server and its children over the next ``seconds``."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


@pytest.fixture(scope="module")
def queue_server(tmp_path_factory):
    yield from run_server(tmp_path_factory, "max_running_jobs = 2")


def test_a_fifth_session_sees_its_place_in_the_queue_then_its_map(queue_server, browser):
    """Four sessions ask for the most samples SmoothGrad allows, each for another class;
    a fifth sees its place in the queue while they run, and its map once its turn comes."""
    url = queue_server
    warm_context, warm = new_page(browser)
    warm.goto(url + "/?sample=chelsea")
    warm.wait_for_selector(OVERLAY, timeout=180_000)  # the top classes are cached now
    warm_context.close()
    sessions = []
    try:
        for class_index in (281, 282, 285, 287):
            context, page = new_page(browser)
            page.goto(f"{url}/?sample=chelsea&class={class_index}&method=smoothgrad"
                      "&smoothgrad.samples=100")
            sessions.append((context, page))
        for _, page in sessions:
            page.get_by_text("Computing SmoothGrad").or_(
                page.get_by_text("In the queue, place")).first.wait_for(timeout=120_000)
        context, fifth = new_page(browser, 390, 844)
        sessions.append((context, fifth))
        fifth.goto(f"{url}/?sample=chelsea&class=283&method=smoothgrad"
                   "&smoothgrad.samples=100")
        waiting = fifth.get_by_text(re.compile(r"In the queue, place [1-4]"))
        waiting.first.wait_for(timeout=120_000)
        text = waiting.first.inner_text()
        print(f"\nthe fifth session saw: {text}")
        waiting.first.scroll_into_view_if_needed()
        screenshot(fifth, "load-fifth-session-queued-phone")
        fifth.wait_for_selector(OVERLAY, timeout=600_000)
        assert "(class 283)" in fifth.locator("[data-testid='stMarkdownContainer']").filter(
            has_text=" for ").filter(has_text="(class").first.inner_text()
        for _, page in sessions:
            page.wait_for_selector(OVERLAY, timeout=600_000)
            assert_no_exception(page)
        assert healthy(url)
    finally:
        for context, _ in sessions:
            context.close()


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory):
    yield from run_server(tmp_path_factory, "max_session_upload_bytes = 20971520\n"
                                            "orphan_upload_seconds = 30")


def test_uploads_beyond_the_quota_are_refused_and_orphans_freed(upload_server, browser):
    """A session uploads its photo as usual, then sends files straight to Streamlit's
    upload endpoint that no widget asks for: past its quota they are refused with a
    reason, and the orphans are freed within seconds, while its photo stays."""
    url = upload_server
    context, page = new_page(browser)
    seen: list = []
    page.on("request", lambda request: seen.append(request)
            if request.method == "PUT" and "/_stcore/upload_file/" in request.url else None)
    try:
        page.goto(url)
        choose_upload(page)
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
            str(ROOT / "saliency_core" / "samples" / "chelsea.png"))
        page.wait_for_selector(OVERLAY, timeout=180_000)
        assert seen, "the photo was not uploaded through the endpoint"
        put = seen[0]
        base = put.url.rsplit("/", 1)[0]
        headers = {k: v for k, v in put.headers.items() if k.lower() == "x-xsrftoken"}
        # Streamlit's metrics endpoint caches the upload store's size for 5 s, so every
        # reading below waits for a fresh value
        assert wait_until(lambda: upload_store_bytes(url) > 0, 15)
        photo = upload_store_bytes(url)
        blob = os.urandom(12 * 2**20)
        statuses, messages = [], []
        for i in range(2):
            response = page.request.put(
                f"{base}/orphan-{i}", headers=headers,
                multipart={"file": {"name": f"o{i}.bin", "mimeType": "application/octet-stream",
                                    "buffer": blob}})
            statuses.append(response.status)
            messages.append(response.text())
        assert statuses == [204, 413], (statuses, messages)
        assert "This session's uploads would pass 20 MB" in messages[1]
        # the accepted orphan is held (the sweeper frees it only 30 s after it sees it)
        assert wait_until(lambda: upload_store_bytes(url) >= photo + 12 * 2**20, 15)
        assert wait_until(lambda: upload_store_bytes(url) == photo, 70)
        page.get_by_role("link", name="Compare").click()  # the kept photo still works
        page.wait_for_selector(OVERLAY, timeout=180_000)
        assert_no_exception(page)
        assert healthy(url)
    finally:
        context.close()

