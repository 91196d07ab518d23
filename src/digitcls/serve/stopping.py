"""Stopping the server whole: a signal to its main process, or that process's death, ends every process it started.

LitServe has one stop path started by a signal: ``LitServer.run`` catches the ``KeyboardInterrupt`` of Ctrl-C and
then stops the uvicorn process, the model workers and its multiprocessing manager, and joins them. Python's
default action for SIGTERM and SIGHUP kills the main process alone, and those processes live on, holding the
port (the manager and the uvicorn process inherit its listening socket). So ``stop_on_signals`` makes SIGTERM and
SIGHUP take the Ctrl-C path. Neither LitServe nor uvicorn stops its processes when the main process dies
without that path (SIGKILL, a crash, a signal during start-up), so each process the server starts asks the
kernel for a SIGTERM when its parent exits (``exit_with_parent``, Linux's PR_SET_PDEATHSIG); the main process
asks the same of the shell or program that started it, unless it runs under ``nohup``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def stop_on_signals() -> list[str]:
    """SIGINT, SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in this (the main) process, which LitServe answers
    with its graceful shutdown; every process forked from now on (LitServe's uvicorn process and manager) gets
    the default actions back, and exits with this one. Returns the list the received signals' names go to.

    A signal ignored at start stays ignored: ``nohup`` ignores SIGHUP so that the server outlives its terminal.
    Otherwise the server stops when whatever started it exits, however it ends (a shell killed with SIGKILL sends
    its jobs no SIGHUP). A second signal interrupts the shutdown; ``exit_with_parent`` then ends what is left.
    """
    received: list[str] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    handled = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
    for stop_signal in handled:
        signal.signal(stop_signal, stop)
    if signal.SIGHUP in handled and os.getppid() > 1:  # 1 or 0: started by init or a container runtime
        exit_with_parent(os.getppid())  # the SIGTERM it sends takes the graceful path above
    forking_pid = [os.getpid()]

    def in_forked_child() -> None:
        for stop_signal in handled:
            signal.signal(stop_signal, signal.SIG_DFL)
        exit_with_parent(forking_pid[0])

    os.register_at_fork(
        before=lambda: forking_pid.__setitem__(0, os.getpid()), after_in_child=in_forked_child
    )
    return received


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent ``parent_pid`` exits (Linux; elsewhere nothing).

    Linux sends it when the parent's *thread* that started this process ends: a program that starts the server
    from a short-lived thread stops it with that thread."""
    if not sys.platform.startswith("linux"):
        return
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent exited before the request: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)
