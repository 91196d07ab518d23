"""Stopping `python -m digitcls.serve` the way a process supervisor or `kill <pid>` does: a signal to its main
process only. SIGTERM, SIGINT and SIGHUP stop the whole server: a request in flight is answered, the main
process logs one line and exits 0, no process of its group is left and the port can be bound again. SIGKILL
(no shutdown at all) still leaves nothing behind: every process the server started exits with its parent.

Each test starts its own server in its own session, so the group holds only the server's processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("litserve", reason="the serve extra is not installed: pip install -e '.[serve]'")

from digitcls.serve.health import wait_until_healthy  # noqa: E402
from digitcls.serve.server import check_port_free  # noqa: E402
from tests.helpers import SERVE_START_TIMEOUT_S, cli_env, draw_digits, free_port, png_bytes, varied_checkpoint  # noqa: E402

STOP_DEADLINE_S = 10  # from the signal to the port free and every process gone (issue 26)
pytestmark = [
    pytest.mark.timeout(SERVE_START_TIMEOUT_S + 120),  # a start on a busy machine, then the stop
    pytest.mark.skipif(
        not Path("/proc/self/stat").is_file(), reason="reads process groups from /proc (Linux)"
    ),
]


class Server:
    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"


def hangup_as_default() -> None:
    """The server started as from a terminal, even when the tests run under ``nohup`` (SIGHUP ignored, inherited)
    or in a test worker that ignores Ctrl-C (SIGINT ignored, inherited: the server would rightly keep it so)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return varied_checkpoint(tmp_path_factory.mktemp("serve_stop") / "varied.ckpt")


@pytest.fixture
def server(checkpoint: Path, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitcls.serve", f"model_path={checkpoint}", f"port={port}"],
            cwd=tmp_path, env=cli_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=hangup_as_default,
        )  # fmt: skip
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, log, SERVE_START_TIMEOUT_S)
        yield Server(process, port, log)
    finally:  # whatever the test left running
        for pid in group_members(process.pid):
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


def group_members(group: int) -> list[int]:
    """The live (not zombie) processes of process group ``group``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):  # it exited while being read
            continue
        if int(pgrp) == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


def port_is_free(port: int) -> bool:
    try:
        check_port_free("127.0.0.1", port)
    except Exception:
        return False
    return True


def seconds_until_stopped(server: Server, sent_at: float) -> float:
    """Seconds from ``sent_at`` until the port is free and no process of the server's group is alive."""
    while time.monotonic() - sent_at < STOP_DEADLINE_S:
        server.process.poll()  # reaps the main process once it exits
        if not group_members(server.process.pid) and port_is_free(server.port):
            return time.monotonic() - sent_at
        time.sleep(0.05)
    left = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120] for pid in
            group_members(server.process.pid)]  # fmt: skip
    raise AssertionError(
        f"{STOP_DEADLINE_S} s after the signal: port free {port_is_free(server.port)}, still "
        f"running {left}\n{server.log.read_text()[-3000:]}"
    )


def start_upload(url: str, image: bytes) -> tuple[socket.socket, bytes]:
    """A multipart ``POST /predict`` sent up to the middle of its body: in flight until the rest is sent."""
    boundary = "digitcls-stop-test"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="digit.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
    head = (f"POST /predict HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()  # fmt: skip
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head + body[: len(body) // 2])
    return connection, body[len(body) // 2 :]


def answer_of(connection: socket.socket, rest: bytes) -> bytes:
    connection.sendall(rest)
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    return answer


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_to_the_main_process_stops_the_whole_server(
    server: Server, stop_signal: signal.Signals
) -> None:
    started = group_members(server.process.pid)
    assert len(started) >= 4, "main, manager, uvicorn and model worker processes expected"
    connection, rest = start_upload(server.url, png_bytes(draw_digits(np.array([3]), seed=0)[0]))
    sent_at = time.monotonic()
    os.kill(server.process.pid, stop_signal)  # the main process only, as `kill <pid>` does
    time.sleep(0.5)  # the shutdown has begun: the request in flight must still be answered
    answer = answer_of(connection, rest)
    assert answer.startswith(b"HTTP/1.1 200 OK") and b'"label"' in answer, answer[:500]
    stopped_after = seconds_until_stopped(server, sent_at)
    assert server.process.wait(timeout=1) == 0
    lines = [
        line for line in server.log.read_text().splitlines() if line.startswith("digitcls serve: stopped")
    ]
    assert lines == [f"digitcls serve: stopped on {stop_signal.name}; every process it started has exited and port "
                     f"{server.port} is free"]  # fmt: skip
    print(
        f"{stop_signal.name}: port free and {len(started)} processes gone {stopped_after:.2f} s after the signal"
    )


@pytest.mark.slow
def test_sighup_stops_the_whole_server(server: Server) -> None:
    """What a closing terminal sends (`nohup` makes the server ignore it)."""
    sent_at = time.monotonic()
    os.kill(server.process.pid, signal.SIGHUP)
    seconds_until_stopped(server, sent_at)
    assert server.process.wait(timeout=1) == 0 and "stopped on SIGHUP" in server.log.read_text()


def test_processes_exit_with_a_killed_main_process(server: Server) -> None:
    """SIGKILL runs no shutdown: the manager, uvicorn and model worker processes exit because their parent did."""
    assert len(group_members(server.process.pid)) >= 4
    sent_at = time.monotonic()
    os.kill(server.process.pid, signal.SIGKILL)
    stopped_after = seconds_until_stopped(server, sent_at)
    print(f"SIGKILL: port free and every process gone {stopped_after:.2f} s after it")


@pytest.mark.parametrize("nohup", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["plain", "nohup"])
def test_the_server_stops_with_the_shell_that_started_it(checkpoint: Path, tmp_path: Path, nohup: bool) -> None:
    """A shell killed with SIGKILL sends its jobs no SIGHUP; the server stops anyway, unless started with nohup."""
    port = free_port()
    log = tmp_path / "serve.log"
    command = f"{'nohup ' if nohup else ''}{sys.executable} -m digitcls.serve model_path={checkpoint} port={port}"
    shell = subprocess.Popen(
        ["bash", "-c", f"{command} > {log} 2>&1 & wait"], cwd=tmp_path, env=cli_env(), start_new_session=True,
        preexec_fn=hangup_as_default,
    )  # fmt: skip
    stopped = Server(shell, port, log)
    try:
        wait_until_healthy(stopped.url, shell, log, SERVE_START_TIMEOUT_S)
        sent_at = time.monotonic()
        os.kill(shell.pid, signal.SIGKILL)
        if nohup:
            time.sleep(2)
            with urllib.request.urlopen(f"{stopped.url}/health", timeout=5) as answer:
                assert answer.read() == b"ok"  # still answering: nohup means outlive the shell
        else:
            print(f"shell killed: server gone {seconds_until_stopped(stopped, sent_at):.2f} s later")
            assert "digitcls serve: stopped on SIGTERM" in log.read_text()
    finally:
        for pid in group_members(shell.pid):
            os.kill(pid, signal.SIGKILL)
