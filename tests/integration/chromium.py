"""Headless Chromium driven over the DevTools protocol on a pipe: no driver, no extra package.

`--remote-debugging-pipe` makes Chromium read protocol messages from fd 3
and write them to fd 4, each a JSON object ended by a NUL byte. That is all
a test needs to open a page, evaluate script in it and take a screenshot.
The Debian package `chromium` is installed with apt-get when missing (the
test setup's job on a clean CI machine): a browser test never skips.
"""

from __future__ import annotations

import base64
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final

__all__ = ["CHROMIUM", "Browser", "ensure_chromium"]

CHROMIUM: Final = Path("/usr/bin/chromium")
_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)


def ensure_chromium() -> Path:
    """/usr/bin/chromium, installed from Debian's registry first if it is missing."""
    if not CHROMIUM.exists():
        apt = shutil.which("apt-get")
        assert apt is not None, "chromium is missing and apt-get is not available to install it"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update"], check=True, env=env, capture_output=True)
        subprocess.run([apt, "install", "-y", "chromium"], check=True, env=env, capture_output=True)
    assert CHROMIUM.exists(), "apt-get install chromium did not provide /usr/bin/chromium"
    return CHROMIUM


class ProtocolError(Exception):
    """Chromium answered a command with an error."""


class Browser:
    """One headless Chromium with a fresh profile; `open` a page, then drive it.

    Blocking: call it from a worker thread when an event loop must keep running.
    """

    def __init__(self, width: int = 1280, height: int = 1500) -> None:
        self._profile = tempfile.mkdtemp(prefix="mesh-x402-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above 4 first, so placing them on 3 and 4 clobbers nothing.
        to_child_r, from_child_w = (self._above_four(fd) for fd in (to_child_r, from_child_w))
        command = [
            str(ensure_chromium()),
            *_FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]

        def onto_three_and_four() -> None:
            # Runs in the child before exec: only dup2, which is safe there.
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self._process = subprocess.Popen(
            command,
            pass_fds=(3, 4),
            preexec_fn=onto_three_and_four,  # noqa: PLW1509 - dup2 only
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._ids = itertools.count(1)
        self._buffer = b""
        self._session: str | None = None
        self._events: list[str] = []
        self._size = (width, height)

    @staticmethod
    def _above_four(fd: int) -> int:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return moved

    def _send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if "method" in reply:  # an event: kept for `_wait_event`
                self._events.append(reply["method"])
                continue
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise ProtocolError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise ProtocolError("chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def open(self, url: str) -> None:
        """Open `url` in a new tab and attach to it."""
        target = self._send("Target.createTarget", {"url": "about:blank"})
        attached = self._send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session = attached["sessionId"]
        width, height = self._size
        self._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self._send("Page.enable")
        self._events.clear()
        self._send("Page.navigate", {"url": url})
        self._wait_event("Page.loadEventFired")

    def _wait_event(self, method: str) -> None:
        while method not in self._events:
            message = self._read()
            if "method" in message:
                self._events.append(message["method"])

    def evaluate(self, expression: str) -> Any:
        """The value of `expression` (awaited if it is a promise), as JSON."""
        result = self._send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page."""
        shot = self._send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with_pipe = True
        try:
            self._send("Browser.close")
        except (ProtocolError, OSError):
            with_pipe = False
        try:
            self._process.wait(timeout=30 if with_pipe else 1)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._to_child, self._from_child):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
