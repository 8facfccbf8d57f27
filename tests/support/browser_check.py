#!/usr/bin/env python3
"""Opens a page in Debian's headless chromium and reports what a person would see.

Drives the browser over its DevTools protocol: loads URL, waits until the page's own
`window.sockdispatchPage` says it has drawn --samples refreshes with points in its charts,
then prints one JSON object on stdout:

  {"errors": [...], "page": {...}, "rows": [slot, ...], "screenshot": PATH}

`errors` holds every console error, uncaught exception and browser log error (a resource
that failed to load, a Content-Security-Policy refusal). Exits 0 when the page got there in
--timeout seconds, 1 otherwise (the JSON still says what was seen), 2 on bad usage or no
browser. Usage: browser_check.py URL --screenshot FILE [--samples N] [--timeout S]
"""

import argparse
import asyncio
import base64
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websockets

BROWSERS = ["/usr/bin/chromium-headless-shell", "/usr/bin/chromium"]


def find_browser():
    for path in BROWSERS:
        if os.access(path, os.X_OK):
            return path
    return None


class Session:
    """One DevTools page session: commands with ids, events collected as they come."""

    def __init__(self, socket):
        self.socket = socket
        self.next_id = 0
        self.errors = []

    async def call(self, method, **params):
        self.next_id += 1
        mine = self.next_id
        await self.socket.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.note(message)

    def note(self, message):
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append("console: " + text)
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception", {})
            self.errors.append("exception: " + str(exception.get("description", details.get("text"))))
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")


async def inspect(ws_url, args):
    async with websockets.connect(ws_url, max_size=None) as socket:
        session = Session(socket)
        await session.call("Runtime.enable")
        await session.call("Log.enable")
        await session.call("Page.enable")
        await session.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                           deviceScaleFactor=1, mobile=False)
        await session.call("Page.navigate", url=args.url)
        deadline = time.monotonic() + args.timeout
        page = None
        reached = False
        while time.monotonic() < deadline:
            page = await session.evaluate("window.sockdispatchPage || null")
            if page and page.get("samples", 0) >= args.samples and page.get("chartPoints", 0) > 0:
                reached = True
                break
            await asyncio.sleep(0.2)
        rows = await session.evaluate(
            "[...document.querySelectorAll('#workers tbody tr')].map(r => Number(r.dataset.slot))")
        shot = await session.call("Page.captureScreenshot", format="png")
        with open(args.screenshot, "wb") as out:
            out.write(base64.b64decode(shot["data"]))
        # Events that arrived after the last command.
        try:
            while True:
                session.note(json.loads(await asyncio.wait_for(socket.recv(), 0.2)))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        return reached, {"errors": session.errors, "page": page, "rows": rows or [],
                         "screenshot": args.screenshot}


def die_with_parent():
    """In the browser, before exec: SIGKILL when this script's process ends."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def end_group(process):
    """Ends the browser and every helper process it started (its process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its helpers may linger a moment: end what is left of the group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("browser_check: no chromium (packaging/install-deps.sh installs "
              "chromium-headless-shell)", file=sys.stderr)
        return 2
    profile = tempfile.mkdtemp(prefix="sockdispatch-browser.")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--disable-background-networking",
               "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
               f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"]
    # Its own process group, to be ended whole (the browser's helpers included), and killed
    # with this script if the test kills the script first.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, preexec_fn=die_with_parent)
    try:
        port = None
        started = time.monotonic()
        while port is None and time.monotonic() - started < 20:
            line = process.stderr.readline()
            if not line:
                break
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        if port is None:
            print("browser_check: the browser did not start its DevTools endpoint",
                  file=sys.stderr)
            return 2
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            targets = json.load(answer)
        page_target = next(t for t in targets if t.get("type") == "page")
        reached, report = asyncio.run(
            asyncio.wait_for(inspect(page_target["webSocketDebuggerUrl"], args),
                             args.timeout + 20))
        print(json.dumps(report))
        return 0 if reached else 1
    finally:
        end_group(process)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
