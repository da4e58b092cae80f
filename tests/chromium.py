"""Open a local HTML file in headless Chromium with the network off and report what a person would see.

Talks the DevTools protocol over a pipe (``--remote-debugging-pipe``: fd 3 in, fd 4 out, messages
separated by NUL), so no port is opened.  Collects console messages, uncaught exceptions, log
entries and every request that is not a ``data:``/``file:`` URL or that failed; evaluates a script
in the page; takes a full-page screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


@dataclass
class PageRun:
    console: list[dict] = field(default_factory=list)  # Runtime.consoleAPICalled / Log.entryAdded
    exceptions: list[dict] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL requested
    failed: list[dict] = field(default_factory=list)  # Network.loadingFailed
    value: object = None  # the evaluated script's result
    screenshot: bytes = b""

    @property
    def errors(self) -> list[str]:
        out = [f"console {c.get('type') or c.get('level')}: {c.get('text') or c.get('args')}" for c in self.console
               if (c.get("type") or c.get("level")) in ("error", "assert")]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [f"failed request: {f}" for f in self.failed]
        return out


class _Pipe:
    def __init__(self, exe: str, extra: list[str]):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child():  # chrome reads fd 3, writes fd 4 (move both out of the way first: they may be 3 or 4)
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            a2, b2 = os.dup2(a, 100), os.dup2(b, 101)
            os.dup2(a2, 3)
            os.dup2(b2, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--disable-sync", "--no-default-browser-check",
             "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", *extra, "about:blank"],
            close_fds=False, preexec_fn=child,  # fds 3/4 made by dup2 in the child stay open stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        want = self._id
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._next(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._next(deadline))
        except TimeoutError:
            pass

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            os.close(self._w)
            os.close(self._r)
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_page(exe: str, path: str, script: str, *, width: int = 1300, height: int = 1800,
              timeout: float = 60) -> PageRun:
    """Load ``path`` offline, evaluate ``script`` (an expression returning JSON-able data), screenshot."""
    pipe = _Pipe(exe, [f"--window-size={width},{height}"])
    run = PageRun()
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        s = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            pipe.send(m, session=s)
        pipe.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                       "uploadThroughput": -1}, session=s)
        pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=s)
        pipe.events.clear()
        pipe.send("Page.navigate", {"url": "file://" + os.path.abspath(path)}, session=s)
        pipe.wait_event("Page.loadEventFired", timeout)
        pipe.drain(0.5)
        res = pipe.send("Runtime.evaluate", {"expression": script, "returnByValue": True, "awaitPromise": True},
                        session=s)
        if "exceptionDetails" in res:
            run.exceptions.append(res["exceptionDetails"].get("text"))
        run.value = res.get("result", {}).get("value")
        shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=s,
                         timeout=timeout)
        run.screenshot = base64.b64decode(shot["data"])
        pipe.drain(0.3)
    finally:
        pipe.close()
    for e in pipe.events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            run.console.append({"type": p.get("type"), "args": [a.get("value") for a in p.get("args", [])]})
        elif m == "Log.entryAdded":
            run.console.append(p.get("entry", {}))
        elif m == "Runtime.exceptionThrown":
            run.exceptions.append(p.get("exceptionDetails", {}).get("text"))
        elif m == "Network.requestWillBeSent":
            run.requests.append(p.get("request", {}).get("url", ""))
        elif m == "Network.loadingFailed":
            run.failed.append({"error": p.get("errorText"), "id": p.get("requestId")})
    return run
