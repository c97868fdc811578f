"""``python -m saliency_core explain --engine ray``: the same outputs as the local engine.

The Ray runs are subprocesses of the real command line: one starts its own
local Ray, one connects through ``--address`` to a Ray "cluster" started here
on the loopback address (``ray start --head --block``, stopped by its process
id). Each Ray gets its own short temporary folder, and the tests check that no
process of it is left running. A tiny ``.keras`` model keeps the actors' start
cheap (each still imports TensorFlow, about 3 s).
"""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

pytestmark = pytest.mark.slow

IMAGES = 12
TIMING_FIELDS = ("created", "seconds", "engine")
"""Provenance fields that may differ between engines (all else must be equal)."""


TOKEN = secrets.token_hex(32)


def ray_env(temp_dir: Path, token: bool = True) -> dict[str, str]:
    """The environment of a Ray run: no usage statistics, Ray's files in ``temp_dir``.

    Ray 2.60 turns token authentication on for new clusters; for a cluster started
    here the token is given (``token``), so that nothing is read from or written to
    ``~/.ray``. The command's own local Ray makes its own token. A stopped head does
    not wait 30 s for its node to drain.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=str(temp_dir),
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               SALIENCY_STUDIO_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3")
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    return env


def processes_using(path: Path) -> list[str]:
    """Command lines of running processes that mention ``path`` (Ray's own folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(path) in line:
                found.append(f"{entry.name}: {line[:120]}")
    return found


def _process_table() -> dict[int, int]:
    """``{pid: parent pid}`` of every running process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def family_of(root: int, path: Path) -> set[int]:
    """``root``, its descendants, and every process that mentions ``path`` (Ray's)."""
    table = _process_table()
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in table.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return family | {int(line.split(":")[0]) for line in processes_using(path)}


def _decode_address(hex_address: str) -> str:
    """An address of ``/proc/net/tcp[6]`` (32-bit words in host byte order) as text."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening_sockets(pids: set[int]) -> set[tuple[str, int, int]]:
    """``(address, port, pid)`` of every TCP socket the processes ``pids`` listen on."""
    owners = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    owners[target[8:-1]] = pid
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owners:  # 0A: LISTEN
                address, port = fields[1].split(":")
                found.add((_decode_address(address), int(port, 16), owners[fields[9]]))
    return found


def wait_until_gone(path: Path, seconds: float = 20.0) -> list[str]:
    """Wait for every process mentioning ``path`` to exit; those still running."""
    deadline = time.monotonic() + seconds
    while (left := processes_using(path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def short_tmp():
    """A short temporary folder for Ray (its socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sray"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def audit_input(tmp_path_factory):
    """12 small photos, 1 broken file and a tiny ``.keras`` classifier (32×32, 3 classes)."""
    import keras

    root = tmp_path_factory.mktemp("ray-audit")
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((80, 60), Image.Resampling.BICUBIC).save(
            folder / f"img{i:02d}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    keras.Model(inputs, outputs).save(root / "tiny.keras")
    return folder, root / "tiny.keras"


def explain_args(audit_input, out: Path) -> list[str]:
    folder, model = audit_input
    return ["explain", str(folder), "--out", str(out), "--model", str(model),
            "--batch-size", "4"]


@pytest.fixture(scope="module")
def local_out(audit_input, tmp_path_factory):
    """The local engine's outputs (in this process)."""
    from saliency_core.__main__ import main

    out = tmp_path_factory.mktemp("local-out")
    assert main(explain_args(audit_input, out)) == 0
    return out


def run_ray_cli(audit_input, out: Path, temp_dir: Path, *extra: str):
    return subprocess.run([sys.executable, "-m", "saliency_core",
                           *explain_args(audit_input, out), "--engine", "ray", *extra],
                          cwd=ROOT, env=ray_env(temp_dir), capture_output=True, text=True,
                          timeout=180)


def run_and_watch_sockets(args: list[str], env: dict[str, str], temp_dir: Path,
                          timeout: float = 180.0):
    """Run the command, listing the TCP sockets it and its Ray processes listen on, and
    the environment of its raylet, until it exits.

    Returns:
        ``(completed process, {(address, port, pid)}, raylet environment or None)``.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen([sys.executable, "-m", "saliency_core", *args], cwd=ROOT,
                                   env=env, stdout=out, stderr=err, text=True)
        seen: set[tuple[str, int, int]] = set()
        raylet_env = None
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None:
                assert time.monotonic() < deadline, "the Ray run did not finish"
                family = family_of(process.pid, temp_dir)
                seen |= listening_sockets(family)
                for pid in family:
                    try:
                        if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                            raylet_env = dict(item.split("=", 1) for item in Path(
                                f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
                    except OSError:
                        continue
                time.sleep(0.2)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(process.args, process.returncode, out.read(),
                                           err.read())
    return done, seen, raylet_env


def assert_same_outputs(local: Path, ray: Path) -> None:
    """Same files; ``.npy`` and PNG bytes equal; JSON equal apart from timing and engine."""
    names = sorted(p.name for p in local.iterdir())
    assert names == sorted(p.name for p in ray.iterdir())
    assert len([n for n in names if n.endswith(".npy")]) == IMAGES
    for name in names:
        if name.endswith(".npy"):
            a, b = np.load(local / name), np.load(ray / name)
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), name
        elif name.endswith(".png"):
            assert (local / name).read_bytes() == (ray / name).read_bytes(), name
        elif name.endswith(".json"):
            a, b = (json.loads((folder / name).read_text()) for folder in (local, ray))
            assert a["engine"] == {"name": "local"}
            assert b["engine"]["name"] == "ray" and b["engine"]["version"]
            assert ({k: v for k, v in a.items() if k not in TIMING_FIELDS}
                    == {k: v for k, v in b.items() if k not in TIMING_FIELDS}), name

    def rows(folder):  # summary.csv without the seconds column
        with (folder / "summary.csv").open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        column = lines[0].index("seconds")
        return [line[:column] + line[column + 1:] for line in lines]

    assert rows(local) == rows(ray)
    assert rows(ray)[1][:3] == ["broken.jpg", "", "skipped"]


def test_ray_engine_writes_what_the_local_engine_writes_on_loopback_only(
        audit_input, local_out, tmp_path, short_tmp):
    """The command's own Ray: same outputs; while it runs, every socket it or any Ray
    process listens on is on 127.0.0.0/8 or ::1; token authentication is on with a token
    of its own (none written to ~/.ray); afterwards no process and no file is left."""
    from saliency_core.audit.ray_engine import is_loopback

    pytest.importorskip("ray")
    out = tmp_path / "ray-out"
    home = tmp_path / "home"
    home.mkdir()
    env = dict(ray_env(short_tmp, token=False), HOME=str(home))
    done, sockets, raylet_env = run_and_watch_sockets(
        [*explain_args(audit_input, out), "--engine", "ray"], env, short_tmp)
    assert done.returncode == 0, done.stderr
    assert "skipped broken.jpg: The image file is damaged" in done.stderr
    assert f"explained {IMAGES} of {IMAGES + 1} images (1 skipped)" in done.stderr
    assert "Traceback" not in done.stderr
    assert_same_outputs(local_out, out)
    # GCS, raylet (2 ports), workers and agents listened: all of them on loopback
    assert len({pid for _address, _port, pid in sockets}) >= 3, sockets
    assert len(sockets) >= 5, sockets
    print(f"\nlistening during the run: {sorted(sockets)}")
    exposed = sorted(s for s in sockets if not is_loopback(s[0]))
    assert not exposed, f"listening outside loopback: {exposed}"
    assert raylet_env is not None, "the raylet was not seen"
    assert raylet_env.get("RAY_AUTH_MODE") == "token"
    assert len(raylet_env.get("RAY_AUTH_TOKEN", "")) == 64
    assert not (home / ".ray").exists()
    # the local Ray started for the run stopped with it, and its session folder is gone
    assert not wait_until_gone(short_tmp)
    assert list(short_tmp.iterdir()) == []


def test_loopback_addresses():
    from saliency_core.audit.ray_engine import is_loopback

    for address in ("127.0.0.1", "127.4.5.6", "::1", "::ffff:127.0.0.1", "[::1]"):
        assert is_loopback(address), address
    for address in ("0.0.0.0", "::", "192.0.2.2", "10.0.0.1", "::ffff:10.0.0.1", "fe80::1",
                    "localhost", ""):
        assert not is_loopback(address), address
    assert _decode_address("0100007F") == "127.0.0.1"
    assert is_loopback(_decode_address("0000000000000000FFFF00000100007F"))  # ::ffff:127.0.0.1
    assert _decode_address("00000000000000000000000001000000") == "::1"


@pytest.fixture
def ray_cluster(short_tmp):
    """A separate one-node Ray "cluster" on loopback; yields its address."""
    pytest.importorskip("ray")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (short_tmp / "head.log").open("w")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={short_tmp}"],
        env=ray_env(short_tmp), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert head.poll() is None, (short_tmp / "head.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "ray start --head did not open its port"
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        head.terminate()  # --block: stops every process this head started
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
    assert not wait_until_gone(short_tmp), "Ray processes were left running"


def test_address_runs_on_a_separately_started_cluster(audit_input, local_out, tmp_path,
                                                      ray_cluster, short_tmp):
    out = tmp_path / "cluster-out"
    done = run_ray_cli(audit_input, out, short_tmp, "--address", ray_cluster, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert_same_outputs(local_out, out)  # two actors, outputs still in input order
    assert json.loads((out / "img00.json").read_text())["engine"]["workers"] == 2
    # a pool the cluster cannot hold is refused at once instead of waiting forever
    too_big = run_ray_cli(audit_input, tmp_path / "too-big", short_tmp, "--address",
                          ray_cluster, "--workers", "3", "--cpus-per-worker", "1")
    assert too_big.returncode == 1
    assert ("3 workers x 1 CPU = 3 CPUs, but the cluster has 2"
            in too_big.stderr.strip().splitlines()[-1])


def test_an_address_where_nothing_listens_is_reported_not_waited_for(audit_input, tmp_path,
                                                                      short_tmp):
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_ray_cli(audit_input, tmp_path / "nowhere", short_tmp, "--address",
                       f"127.0.0.1:{port}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert f"cannot start or reach Ray at 127.0.0.1:{port}" in last, last
    assert f"nothing answered at 127.0.0.1:{port}" in last, last


def test_without_ray_the_engine_says_how_to_install_it(audit_input, tmp_path, monkeypatch,
                                                       capsys):
    from saliency_core.__main__ import main

    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert main([*explain_args(audit_input, tmp_path / "out"), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--engine ray needs Ray Data" in err
    assert "pip install -r requirements-scale.txt" in err
    assert not (tmp_path / "out").exists()


def test_ray_options_need_the_ray_engine_and_sensible_values(audit_input, tmp_path, capsys):
    from saliency_core.__main__ import main

    for extra, message in ((["--address", "auto"], "--address need --engine ray"),
                           (["--workers", "2"], "--workers need --engine ray"),
                           (["--gpus-per-worker", "1"], "--gpus-per-worker need --engine ray"),
                           (["--engine", "ray", "--workers", "0"], "at least 1"),
                           (["--engine", "ray", "--cpus-per-worker", "0"], "more than 0")):
        assert main([*explain_args(audit_input, tmp_path / "out"), *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra


def test_pool_size_follows_the_cluster_and_refuses_what_cannot_fit():
    from saliency_core.audit.ray_engine import RayOptions, RayRunError, pool_size

    two_cpus = {"CPU": 2.0}
    assert pool_size(RayOptions(), two_cpus, batches=10) == 1
    assert pool_size(RayOptions(), {"CPU": 16.0}, batches=10) == 8
    assert pool_size(RayOptions(), {"CPU": 16.0}, batches=3) == 3  # no idle actors
    assert pool_size(RayOptions(workers=4), two_cpus, batches=10) == 4  # 4 x 0.5 CPU
    assert pool_size(RayOptions(gpus_per_worker=0.5), {"CPU": 8.0, "GPU": 2.0}, 10) == 4
    with pytest.raises(RayRunError, match="= 3 CPUs, but the cluster has 2"):
        pool_size(RayOptions(workers=3, cpus_per_worker=1.0), two_cpus, batches=10)
    with pytest.raises(RayRunError, match="^1 worker x 1 GPU = 1 GPU, but the cluster has 0"):
        pool_size(RayOptions(gpus_per_worker=1.0), two_cpus, batches=10)
    with pytest.raises(RayRunError, match="^3 workers x 0.5 GPUs = 1.5 GPUs, but the cluster"):
        pool_size(RayOptions(workers=3, gpus_per_worker=0.5), {"CPU": 8.0, "GPU": 1.0}, 10)


def test_actors_get_the_limits_file_and_caches_only_on_a_local_ray(tmp_path, monkeypatch):
    from saliency_core.audit.ray_engine import _actor_env

    (tmp_path / "saliency_studio.toml").write_text("[limits]\nmax_input_side = 256\n")
    monkeypatch.chdir(tmp_path)  # the default config file name, relative to the command
    monkeypatch.delenv("SALIENCY_STUDIO_CONFIG", raising=False)
    monkeypatch.setenv("SALIENCY_STUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SALIENCY_STUDIO_OFFLINE", "1")
    local = _actor_env(local=True)
    assert local["SALIENCY_STUDIO_CONFIG"] == str(tmp_path / "saliency_studio.toml")
    assert local["SALIENCY_STUDIO_CACHE"] == str(tmp_path / "cache")
    cluster = _actor_env(local=False)
    assert cluster["SALIENCY_STUDIO_OFFLINE"] == "1"
    assert "SALIENCY_STUDIO_CONFIG" not in cluster and "SALIENCY_STUDIO_CACHE" not in cluster


def test_outcomes_travel_as_plain_columns_without_pickle():
    from saliency_core.audit.engine import FileOutcome
    from saliency_core.audit.ray_engine import pack_outcomes, unpack_outcomes

    outcomes = [FileOutcome({"file": "a.png", "status": "ok"},
                            {"a.png": b"\x89PNG", "a.npy": b"", "a.json": b"{}\n"}),
                FileOutcome({"file": "bad.jpg", "status": "skipped", "reason": "damaged"}, {})]
    columns = pack_outcomes(outcomes)
    assert set(columns) == {"row", "files", "data"}
    assert all(isinstance(value, (str, bytes)) for column in columns.values()
               for value in column)
    assert list(unpack_outcomes(columns)) == outcomes
