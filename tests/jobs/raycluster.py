"""A private local Ray head for tests that need a real cluster (`ray start --head`, job server, token
auth): unique ports and temp dir, started in its own session and stopped by process id only — other
Ray instances on the machine (other test runs) are never touched. `ray stop` is not used on purpose:
it has no address option and stops every Ray process of the machine."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class RayHead:
    proc: subprocess.Popen
    temp_dir: Path
    dashboard_url: str
    env: dict[str, str]  # what a client (ray job submit) needs: PATH, token, address

    def run(self, *args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kw)

    def submit(self, *args: str, timeout: float = 900, agent_wait_s: float = 120) -> subprocess.CompletedProcess:
        """`ray job submit ARGS`, retried while the head's dashboard agent is still starting (the job
        server answers `ray job list` some seconds before it can start a job)."""
        deadline = time.monotonic() + agent_wait_s
        while True:
            proc = self.run("job", "submit", *args, timeout=timeout)
            if "No available agent" not in proc.stdout + proc.stderr or time.monotonic() > deadline:
                return proc
            time.sleep(3)

    def stop(self) -> None:
        """SIGTERM to our `ray start --block` (it starts shutting its own node down), then SIGKILL whatever
        of our session is left: the raylet's workers, job drivers. Matched by session id and temp dir.
        The wait is short: on 2 cores the graceful shutdown outlasted 10 s, and nothing of it is kept."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                pass
        for pid in _our_processes(self.proc.pid, str(self.temp_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _our_processes(session_id: int, marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            sid = int(stat.rsplit(")", 1)[1].split()[4])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if sid == session_id or marker in cmdline:
            pids.append(int(entry.name))
    return pids


def start_head(num_cpus: int = 4, timeout: float = 180) -> RayHead:
    # Short path: Ray's unix sockets live under the temp dir and must stay under ~107 characters.
    temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    (gcs, dash, client, node_mgr, obj_mgr, agent, agent_grpc, env_agent, metrics) = free_ports(9)
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update({
        # Token auth as on a real cluster (FIELD-NOTES): our own token, never ~/.ray/auth_token,
        # so concurrent test runs do not overwrite each other's.
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
        # The job driver's `python` must be this interpreter (the venv with radisim installed).
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    })
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats", f"--num-cpus={num_cpus}",
           "--num-gpus=0", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
           f"--ray-client-server-port={client}", f"--node-manager-port={node_mgr}",
           f"--object-manager-port={obj_mgr}", f"--dashboard-agent-listen-port={agent}",
           f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={env_agent}",
           f"--metrics-export-port={metrics}", f"--object-store-memory={400 * 2**20}"]
    log = open(temp_dir / "ray_start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    head = RayHead(proc, temp_dir, url, {**env, "RAY_ADDRESS": url})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            head.stop()
            raise RuntimeError(f"ray start exited {proc.returncode}: {(temp_dir / 'ray_start.log').read_text()[-3000:]}")
        if head.run("job", "list", timeout=60).returncode == 0:
            return head
        time.sleep(2)
    log_text = (temp_dir / "ray_start.log").read_text()[-3000:]
    head.stop()
    raise TimeoutError(f"the job server at {url} did not answer in {timeout}s: {log_text}")
