"""The headless Chromium the check scripts drive: Debian's `chromium` package, launched by
Playwright (`pip install playwright`; no browser download), with everything that would reach the
network on its own turned off."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch(playwright: object) -> object:
    """A Chromium browser from a running ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
