"""A real single-node SLURM for the tests: munge, MariaDB, slurmdbd, slurmctld and slurmd.

Each daemon runs in the foreground as a child of the test process, with its configuration, state,
sockets, database and logs under one temporary directory and on free ports. The fixture therefore
knows the pid of everything it started, stops it by that pid, and leaves nothing outside that
directory; only Debian's packages (tests/ensure_slurm.sh) stay installed. Runs as root, like the
daemons and the jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
ENSURE_SLURM = HERE.parent / "ensure_slurm.sh"
PARTITION = "debug"
ACCOUNT = "science"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.25


class ClusterError(RuntimeError):
    """A daemon of the test cluster did not come up; the message ends with its log."""


@dataclass(frozen=True)
class Cluster:
    """A started cluster: its directory, the environment its clients need, partition and account."""

    root: Path
    env: dict[str, str]
    partition: str = PARTITION
    account: str = ACCOUNT

    def client(self, *command: str) -> str:
        """Run a SLURM client (sacct, squeue, ...) against this cluster; its stdout."""
        return subprocess.run(command, env=self.env, capture_output=True, text=True, check=True).stdout


@contextlib.contextmanager
def running_cluster(root: Path) -> Iterator[Cluster]:
    """Install the packages when missing, start every daemon in order, and stop them all on exit."""
    subprocess.run([str(ENSURE_SLURM)], check=True)
    mariadb_port = _write_configs(root)
    env = {**os.environ, "PATH": f"{_srun_with_config(root)}:{_path()}", "SLURM_CONF": str(root / "slurm.conf")}
    daemons: list[subprocess.Popen] = []
    try:
        _start_munge(root, env, daemons)
        _start_mariadb(root, env, daemons, mariadb_port)
        _start_slurmdbd(root, env, daemons)
        _start(daemons, "slurmctld", ["slurmctld", "-D"], root, env, lambda: _ok(["scontrol", "ping"], env))
        _start(
            daemons,
            "slurmd",
            ["slurmd", "-D"],
            root,
            env,
            lambda: _output(["sinfo", "-h", "-o", "%T"], env).strip() == "idle",
        )
        yield Cluster(root, env)
    finally:
        if any(daemon.args[0] == "slurmctld" and daemon.poll() is None for daemon in daemons):
            _cancel_jobs(env)
        for daemon in reversed(daemons):
            _stop(daemon)


def _write_configs(root: Path) -> int:
    """slurm.conf, gres.conf and slurmdbd.conf for this machine's node; the port MariaDB must use."""
    for sub in ("log", "state", "spool", "munge", "mysql"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    node_line = _output(["slurmd", "-C"], {**os.environ, "PATH": _path()}).splitlines()[0]
    slurmctld_port, slurmd_port, slurmdbd_port, mariadb_port = _free_ports(4)
    values = {
        "root": root,
        "node": node_line.split()[0].removeprefix("NodeName="),
        "node_line": node_line,
        "partition": PARTITION,
        "munge_socket": root / "munge" / "munge.socket",
        "slurmctld_port": slurmctld_port,
        "slurmd_port": slurmd_port,
        "slurmdbd_port": slurmdbd_port,
        "mariadb_port": mariadb_port,
    }
    for name in ("slurm.conf", "gres.conf", "slurmdbd.conf"):
        (root / name).write_text((HERE / name).read_text().format(**values))
    (root / "slurmdbd.conf").chmod(0o600)  # slurmdbd refuses a configuration others can read
    return mariadb_port


def _srun_with_config(root: Path) -> Path:
    """A directory with an `srun` that finds this cluster's slurm.conf; goes first on the jobs' PATH.

    The jobs' snakemake (snakemake-executor-plugin-slurm-jobstep) runs each rule under a nested srun
    whose environment it strips of every SLURM_* variable, SLURM_CONF included. A real cluster keeps
    its configuration where srun looks by default (/etc/slurm); this one keeps it under ``root``.
    """
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={root / "slurm.conf"} exec /usr/bin/srun "$@"\n')
    srun.chmod(0o755)
    return bin_dir


def _start_munge(root: Path, env: dict[str, str], daemons: list[subprocess.Popen]) -> None:
    """munged with a fresh key and its socket in the test directory (root needs --force)."""
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    munge = root / "munge"
    command = [
        "munged",
        "--foreground",
        "--force",
        f"--socket={munge / 'munge.socket'}",
        f"--key-file={key}",
        f"--pid-file={munge / 'munged.pid'}",
        f"--seed-file={munge / 'munged.seed'}",
        f"--log-file={root / 'log' / 'munged.log'}",
    ]
    _start(daemons, "munged", command, root, env, lambda: (munge / "munge.socket").exists())


def _start_mariadb(root: Path, env: dict[str, str], daemons: list[subprocess.Popen], port: int) -> None:
    """A throwaway MariaDB for slurmdbd: its own data directory, TCP on localhost, no grant tables."""
    data = root / "mysql"
    small = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M"]  # 90 MB on disk, not 180
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *small,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    command = [
        "mariadbd",
        "--no-defaults",
        f"--datadir={data}",
        f"--socket={root / 'mysql.sock'}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--pid-file={root / 'mariadb.pid'}",
        "--user=root",
        "--skip-grant-tables",
        *small,
    ]
    _start(daemons, "mariadbd", command, root, env, lambda: _port_open(port))


def _start_slurmdbd(root: Path, env: dict[str, str], daemons: list[subprocess.Popen]) -> None:
    """slurmdbd, then the cluster, the test account and root's association (sacctmgr needs slurmdbd)."""
    _start(daemons, "slurmdbd", ["slurmdbd", "-D"], root, env, lambda: _ok(["sacctmgr", "-n", "list", "cluster"], env))
    for command in (
        ["sacctmgr", "-i", "add", "cluster", "deltatune"],
        ["sacctmgr", "-i", "add", "account", ACCOUNT, "Description=tests", "Organization=tests"],
        ["sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}", f"DefaultAccount={ACCOUNT}"],
    ):
        subprocess.run(command, env=env, capture_output=True, text=True, check=True)


def _start(
    daemons: list[subprocess.Popen],
    name: str,
    command: list[str],
    root: Path,
    env: dict[str, str],
    ready: Callable[[], bool],
) -> None:
    """Start one daemon in the foreground (its output to log/NAME.out) and wait until it is ready."""
    out = root / "log" / f"{name}.out"
    with out.open("ab") as handle:
        daemon = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    daemons.append(daemon)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if daemon.poll() is not None or time.monotonic() > deadline:
            logs = "\n".join(
                path.read_text(errors="replace")[-2000:]
                for path in (root / "log" / f"{name}.log", root / "log" / f"{name}.out")
                if path.exists()
            )
            raise ClusterError(f"{name} did not start (exit status {daemon.poll()}):\n{logs}")
        time.sleep(POLL_S)


def _cancel_jobs(env: dict[str, str]) -> None:
    """Cancel what a failed test left queued or running, so no job step outlives slurmd."""
    with contextlib.suppress(subprocess.CalledProcessError):
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True, check=True)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _output(["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING"], env).strip():
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)


def _stop(daemon: subprocess.Popen) -> None:
    """SIGTERM the daemon by its pid and wait; SIGKILL it if it has not exited in time."""
    if daemon.poll() is None:
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait()


def _output(command: list[str], env: dict[str, str]) -> str:
    """A command's stdout, or '' when it fails (the daemon it asks may not be up yet)."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def _ok(command: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(command, env=env, capture_output=True, check=False).returncode == 0


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _free_ports(count: int) -> list[int]:
    """Distinct ports nothing listens on (all held open together while the kernel picks them)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def _path() -> str:
    """PATH with the sbin directories, where Debian puts the daemons."""
    return f"{os.environ['PATH']}:/usr/sbin:/sbin"
