"""A console command that serves until interrupted (``hermes-plugin demo``, ``hermes-plugin proxy``), started
in a subprocess and waited on until it is ready: its URL printed and its port accepting connections."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from types import TracebackType
from typing import IO

URL = re.compile(r"http://127\.0\.0\.1:(\d+)/?")
# Upper bounds on a loaded 2-core machine; every wait ends as soon as its condition holds.
START_DEADLINE = 120.0
STOP_DEADLINE = 60.0


def console_script(name: str = "hermes-plugin") -> str:
    """The installed console script, as a user runs it: next to this interpreter (a venv used without
    activating it), else on PATH."""
    search = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    assert found, f"the {name} console script is not installed (pip install -e .)"
    return found


class ServingCommand:
    """``with ServingCommand([exe, "demo", "--port", "0"]) as served: served.url`` -- ready when entered.

    Both output streams are read by threads into ``stdout``/``stderr``, so the command never blocks on a
    full pipe and the lines before the URL stay available (``banner`` is the line that carried it).
    """

    def __init__(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None,
                 merge_stderr: bool = False) -> None:
        """``merge_stderr``: read stderr as part of stdout (a server such as gunicorn logs its address there)."""
        self.args = args
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd,
                                     stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE)
        self._out: list[str] = []
        self._err: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self._out, self._lines), daemon=True)]
        if self.proc.stderr is not None:
            self._readers.append(threading.Thread(target=self._read, args=(self.proc.stderr, self._err, None),
                                                  daemon=True))
        for reader in self._readers:
            reader.start()
        self.banner = ""
        self.url = ""

    @staticmethod
    def _read(stream: IO[str], into: list[str], lines: queue.Queue[str | None] | None) -> None:
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line)
        if lines is not None:
            lines.put(None)  # end of output: the command exited

    def wait_ready(self, deadline: float = START_DEADLINE) -> str:
        """Block until the command printed a loopback URL and its port accepts a connection; returns the URL."""
        end = time.monotonic() + deadline
        while not self.url:
            try:
                line = self._lines.get(timeout=max(end - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"{self.args[:2]} printed no URL within {deadline}s; output: {self.stderr}{self.stdout}") from None
            if line is None:
                raise AssertionError(f"{self.args[:2]} exited with {self.proc.wait()} before printing a URL; "
                                     f"output: {self.stderr}{self.stdout}")
            if match := URL.search(line):
                self.banner, self.url = line, match.group(0).rstrip("/")
        port = int(URL.search(self.url).group(1))  # type: ignore[union-attr]
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                return self.url
            except OSError:
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise AssertionError(f"{self.url} never accepted a connection; output: {self.stderr}{self.stdout}") from None
                time.sleep(0.05)  # polling the port with a deadline, not a fixed delay

    def interrupt(self, sig: int = signal.SIGINT, deadline: float = STOP_DEADLINE) -> int:
        """Send ``sig`` (Ctrl-C by default) and wait for the command to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=deadline)
        for reader in self._readers:
            reader.join(timeout=deadline)
        return code

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def __enter__(self) -> ServingCommand:
        try:
            self.wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self._readers:
            reader.join()

