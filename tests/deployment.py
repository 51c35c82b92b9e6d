"""A real Flower deployment on 127.0.0.1 for tests: a TLS SuperLink with node
authentication, SuperNodes with their own data and keys, and `flwr` driving it.

Every process starts in its own session; :meth:`Federation.close` ends each
process group it started, and the SuperLink's detached helper processes (found
by the SuperLink's unique port), so nothing outlives a test module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from fedge.deploy import commands
from fedge.deploy.certs import CA_CERT, node_key_paths, write_certs
from fedge.deploy.health import probe
from tests.processes import free_port, pids_matching, terminate

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
CONNECTION = "fedge-test"


@dataclass
class Node:
    name: str
    data: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    node_id: int | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Federation:
    """One SuperLink and named SuperNodes under ``root``."""

    def __init__(self, root: Path, node_data: dict[str, Path], server_data: Path) -> None:
        self.root = root
        self.server_data = server_data
        self.certs = root / "certs"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.flwr_home = root / "flwr-home"
        self.port = free_port()
        self.database = root / "superlink.db"
        self.superlink: subprocess.Popen[bytes] | None = None
        self.nodes = {name: Node(name, data, free_port()) for name, data in node_data.items()}
        self.extra: list[subprocess.Popen[bytes]] = []
        write_certs(self.certs, nodes=[*node_data, "intruder"])
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "FLWR_HOME": str(self.flwr_home),
            "FLWR_LOG_LEVEL": "INFO",  # Flower's default, whatever this process's env says
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
        }
        self.flwr_home.mkdir(parents=True, exist_ok=True)
        (self.flwr_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            + commands.connection_toml(CONNECTION, self.address, self.certs / CA_CERT)
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- processes ---------------------------------------------------------------
    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        return subprocess.Popen(
            argv, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_superlink(self, timeout: float = 120.0) -> None:
        argv = commands.superlink_argv(
            self.certs, host="127.0.0.1", port=self.port, database=self.database,
            program=str(BIN / "flower-superlink"),
        )  # fmt: skip
        self.superlink = self._start("superlink", argv, self.env)
        url = f"https://{self.address}/health"
        deadline = time.monotonic() + timeout
        while not probe(url, self.certs / CA_CERT, timeout=2).ok:
            if self.superlink.poll() is not None:
                raise RuntimeError(f"SuperLink exited:\n{self.log('superlink')[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"SuperLink not healthy after {timeout}s")
            time.sleep(0.5)

    def kill_server(self) -> None:
        """SIGKILL the SuperLink and its ServerApp, as a crashed server machine would."""
        if self.superlink is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.superlink.pid, signal.SIGKILL)
            self.superlink.wait()
        for pid in self._server_helpers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _server_helpers(self) -> list[int]:
        """The SuperLink's detached SuperExec and ServerApp processes."""
        return pids_matching("flower-superexec", self.address) + pids_matching(
            "flwr-serverapp", self.address
        )

    def node_env(self, node: Node) -> dict[str, str]:
        return {**self.env, "FEDGE_CACHE_DIR": str(self.root / "cache" / node.name)}

    def start_node(self, name: str) -> Node:
        node = self.nodes[name]
        private, _ = node_key_paths(self.certs, name)
        argv = commands.supernode_argv(
            self.address, node.data, ca_cert=self.certs / CA_CERT, private_key=private,
            port=node.port, program=str(BIN / "flower-supernode"),
        )  # fmt: skip
        node.process = self._start(name, argv, self.node_env(node))
        return node

    def start_stranger(
        self, name: str, *, key: str | None, tls: bool, max_retries: int | None = None
    ) -> subprocess.Popen[bytes]:
        """A SuperNode that should not get in (unregistered key, no key, no TLS)."""
        argv = commands.supernode_argv(
            self.address, self.root / "nowhere",
            ca_cert=self.certs / CA_CERT if tls else None,
            private_key=node_key_paths(self.certs, key)[0] if key else None,
            port=free_port(), max_retries=max_retries,
            program=str(BIN / "flower-supernode"),
        )  # fmt: skip
        proc = self._start(name, argv, self.env)
        self.extra.append(proc)
        return proc

    def kill_node(self, name: str) -> None:
        """SIGKILL a SuperNode with its SuperExec and ClientApps (one process group)."""
        node = self.nodes[name]
        assert node.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()

    def close(self) -> None:
        procs = [n.process for n in self.nodes.values() if n.process is not None]
        procs += self.extra
        if self.superlink is not None:
            procs.append(self.superlink)
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        terminate(self._server_helpers())

    # --- flwr CLI ------------------------------------------------------------------
    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "flwr"), *args], env=self.env, cwd=self.root, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip

    def register(self, name: str) -> int:
        _, public = node_key_paths(self.certs, name)
        argv = commands.register_argv(public, CONNECTION, name)[1:]
        proc = self.flwr(*argv, "--format", "json")
        data = _json(proc)
        assert data.get("success", True), proc.stdout + proc.stderr
        node_id = int(data["node-id"])
        self.nodes[name].node_id = node_id
        return node_id

    def node_status(self) -> dict[int, str]:
        data = _json(self.flwr("supernode", "ls", CONNECTION, "--format", "json"))
        return {int(n["node-id"]): n["status"] for n in data.get("nodes", [])}

    def wait_online(self, names: list[str], timeout: float = 180.0) -> None:
        wanted = {self.nodes[n].node_id for n in names}
        deadline = time.monotonic() + timeout
        while True:
            status = self.node_status()
            if all(status.get(i) == "online" for i in wanted):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {names} not online after {timeout}s: {status}")
            time.sleep(1.0)

    def submit(self, values: dict[str, object], *, stream: bool, timeout: float = 900.0) -> Run:
        """``flwr run`` the repository's app with these run-config values."""
        config = self.root / f"run-config-{time.monotonic_ns()}.toml"
        config.write_text(tomli_w.dumps(values))
        argv = commands.run_argv(ROOT, CONNECTION, config, stream=stream)[1:]
        start = time.monotonic()
        proc = self.flwr(*argv, timeout=timeout)
        match = re.search(r"Successfully started run (\d+)", proc.stdout + proc.stderr)
        assert match, proc.stdout[-3000:] + proc.stderr[-3000:]
        return Run(self, int(match.group(1)), proc, time.monotonic() - start)

    def run_status(self, run_id: int) -> dict[str, object]:
        data = _json(self.flwr("ls", CONNECTION, "--run-id", str(run_id), "--format", "json"))
        return data["runs"][0]

    def wait_run(self, run_id: int, timeout: float = 900.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.run_status(run_id)
            if str(status["status"]).startswith("finished"):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} not finished after {timeout}s: {status}")
            time.sleep(2.0)


@dataclass
class Run:
    federation: Federation
    run_id: int
    proc: subprocess.CompletedProcess[str]
    seconds: float

    def status(self) -> dict[str, object]:
        return self.federation.run_status(self.run_id)

    def output(self) -> str:
        return self.proc.stdout[-4000:] + self.proc.stderr[-2000:]


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    text = proc.stdout
    try:
        return json.loads(text[text.index("{") :])
    except ValueError as e:
        raise AssertionError(f"no JSON from flwr: {text[-2000:]} {proc.stderr[-2000:]}") from e
