"""A real local Ray cluster (a head and one worker node) that sees only loopback, for the tests and
the benchmark of ``rag index --engine ray``.

``run_in_cluster(steps)`` runs this file as PID 1 of fresh network, PID and mount namespaces
(``unshare -n -p -f --mount-proc``, as root): it brings ``lo`` up, starts ``ray start --head``
and one ``ray start --address`` worker on 127.0.0.1 (1 CPU and a small object store each), runs
the steps and prints one JSON line of results. Outside a namespace Ray registers its nodes on the
machine's eth0 address, even with ``--node-ip-address 127.0.0.1``; inside, 127.0.0.1 is the only
address there is, so no test traffic can leave the machine. ``ray stop --force`` ends the cluster
(it sees only this PID namespace); when PID 1 exits the kernel ends anything left, so nothing
outlives the test.

A step is ``{"argv": [...], "env": {...}, "kill": {"after": "embedded 40", "match": "Embedder"}}``:
a command run to completion, its stdout/stderr/returncode recorded. With ``kill``, once a
progress line reports at least that many chunks embedded, one Ray worker process whose command
line contains ``match`` (an embed actor) is sent SIGKILL, by its pid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PORT = 6390
OBJECT_STORE = 80 * 2**20  # the minimum Ray accepts is 75 MiB


def unshare_reason() -> str | None:
    """Why a namespaced cluster cannot run here (``None``: it can)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return 'ray is not installed (pip install "ragnodes[ray]")'
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is missing"
    probe = subprocess.run(
        ["unshare", "-n", "-p", "-f", "--mount-proc", "ip", "link", "set", "lo", "up"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"unshare -n -p is not permitted here (needs root): {probe.stderr.strip()[:120]}"
    return None


def env_for_ray() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_DEDUP_LOGS="0")
    env.pop("RAY_ADDRESS", None)
    return env


def run_in_cluster(steps: list[dict[str, Any]], timeout: float = 900) -> dict[str, Any]:
    """Run ``steps`` against a fresh namespaced cluster; returns ``{"steps": [one result per
    step], "cluster_start_s": seconds}``."""
    proc = subprocess.run(
        # --kill-child: if unshare is killed (a timeout), PID 1 and so the whole cluster go too
        [
            "unshare",
            "-n",
            "-p",
            "--kill-child",
            "--mount-proc",
            sys.executable,
            __file__,
            json.dumps(steps),
        ],  # fmt: skip
        env=env_for_ray(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cluster run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def _ray(*args: str) -> None:
    exe = str(Path(sys.executable).with_name("ray"))
    subprocess.run([exe, *args], check=True, capture_output=True, text=True, timeout=180)


def _kill_one(match: str) -> int | None:
    """SIGKILL one process of this namespace whose command line contains ``match``."""
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if match in cmd and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)
            return pid
    return None


def _cpu_ticks() -> dict[int, int]:
    """utime + stime (clock ticks) of every process of this namespace."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            out[int(name)] = int(fields[11]) + int(fields[12])
    return out


class _CpuMeter(threading.Thread):
    """CPU seconds used by all processes of the namespace while a step runs (sampled every
    0.2 s, so a process that lives less than that is missed): the cluster's whole cost."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.first = _cpu_ticks()
        self.last = dict(self.first)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.last.update(_cpu_ticks())

    def seconds(self) -> float:
        self.done.set()
        self.join()
        self.last.update(_cpu_ticks())
        ticks = sum(v - self.first.get(pid, 0) for pid, v in self.last.items())
        return ticks / os.sysconf("SC_CLK_TCK")


def _step(step: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, **step.get("env", {})}
    kill = step.get("kill")
    t0 = time.perf_counter()
    meter = _CpuMeter()
    meter.start()
    p = subprocess.Popen(
        step["argv"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    err: list[str] = []
    killed = None
    assert p.stderr is not None and p.stdout is not None
    for line in p.stderr:  # progress lines come on stderr
        err.append(line)
        m = re.search(r"embedded (\d+)", line)
        if kill and killed is None and m and int(m.group(1)) >= int(kill["after"]):
            killed = _kill_one(kill["match"])
    out = p.stdout.read()
    rc = p.wait()
    return {
        "cpu_s": meter.seconds(),
        "rc": rc,
        "stdout": out,
        "stderr": "".join(err),
        "seconds": time.perf_counter() - t0,
        "killed_pid": killed,
    }


def main(spec: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    common = [
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(OBJECT_STORE),
        "--disable-usage-stats",
    ]
    results = []
    t0 = time.perf_counter()
    try:
        _ray(
            "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(PORT),
            "--include-dashboard", "false", "--temp-dir", tmp, *common,
        )  # fmt: skip
        _ray("start", "--address", f"127.0.0.1:{PORT}", "--node-ip-address", "127.0.0.1", *common)
        started = time.perf_counter() - t0
        for step in json.loads(spec):
            results.append(_step(step))
    finally:
        try:
            _ray("stop", "--force")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"steps": results, "cluster_start_s": started}))


if __name__ == "__main__":
    main(sys.argv[1])
