"""Make the README's screenshots of the staff's pages (docs/screenshots/*.png), one per page.

    python docs/screenshots.py [--out docs/screenshots]

Plays the staff day of the browser test (tests/staff_day.py) against a real `matcher serve` on a
throw-away database (the demo corpus, loaded by the server; the first administrator made by
`matcher users add`) in Debian's Chromium, driven by Playwright (never `playwright install`), with
the browser's language set to Chinese, and keeps a full-page screenshot of every page it meets.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import staff_day  # noqa: E402 - after the path is set


@contextmanager
def serving(db: Path, log: Path) -> Iterator[str]:
    """`matcher serve` on a free port, until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("wb") as out:
        command = [sys.executable, "-m", "matcher", "serve", "--port", str(port), "--db", str(db)]
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"matcher serve stopped:\n{log.read_text()}")
                try:
                    if httpx.get(url + "/api/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"matcher serve did not answer:\n{log.read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()

    def shot(page: object, name: str) -> None:
        path = args.out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        print(path)

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        db = Path(tmp) / "shots.db"
        staff_day.first_admin(db)
        browser = p.chromium.launch(executable_path=staff_day.CHROMIUM, headless=True,
                                    args=staff_day.CHROMIUM_ARGS)
        try:
            with serving(db, Path(tmp) / "server.log") as url:
                day = staff_day.play(browser, url, Path(tmp), shot=shot)
        finally:
            browser.close()
    if day.problems:
        raise SystemExit("the pages reported problems: " + "; ".join(day.problems))


COOKWARE = "我们厂的不锈钢炒锅用了半年就起皮掉渣，客户投诉多，想找专家看看涂层怎么改进"
THREE_PROBLEMS = "锂电池包在高温下容易过热，齿轮箱噪声大寿命短，还想上MES"


if __name__ == "__main__":
    main()
