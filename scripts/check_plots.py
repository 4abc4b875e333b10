"""Open `dvc plots show`'s page in headless Chromium and check every plot rendered.

Not part of the test suite (it needs a browser): run it by hand, with the network off to prove
the page needs none, e.g. as root:

    dvc plots show -o /tmp/plots
    unshare -n python scripts/check_plots.py /tmp/plots/index.html /tmp/plots.png

Uses Playwright's Python API driving the system's Chromium (Debian package `chromium`); no
browser is downloaded. Prints one line per plot (title, x and y axis titles) and exits 1 when a
plot did not render, an axis is titled "step" or "y", or the page logged an error or tried to
load anything from the network.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from browser import launch

# Each plot's element: a Vega view draws a non-empty canvas, an image has loaded pixels.
READ_VIEWS = """
() => Array.from(document.querySelectorAll('body > div[id]')).map(div => {
  const img = div.querySelector('img');
  if (img) return {id: div.id, kind: 'image', ok: img.naturalWidth > 0};
  const c = div.querySelector('canvas');
  return {id: div.id, kind: 'vega', ok: !!c && c.width > 50 && c.height > 50};
})
"""
SPEC = re.compile(
    r'<div id = "([^"]+)">\s*<script type = "text/javascript">\s*var spec = (.*?);\s*vegaEmbed',
    re.S,
)


def axis_titles(spec: dict) -> list[str]:
    """Every x/y axis title in a Vega-Lite spec (layers and facets included)."""
    found = []
    for part in [spec, *spec.get("layer", []), spec.get("spec", {})]:
        for channel in ("x", "y"):
            enc = part.get("encoding", {}).get(channel)
            if enc:
                found.append(str(enc.get("title") or enc.get("field")))
    return found


def main(page_path: str, screenshot: str) -> int:
    from playwright.sync_api import sync_playwright

    problems, requests, errors = [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("request", lambda r: r.url.startswith("http") and requests.append(r.url))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(page_path).resolve().as_uri())
        page.wait_for_timeout(3000)  # vega-embed renders asynchronously
        # SVG renderer: axis titles become text nodes we can read back
        views = page.evaluate(READ_VIEWS)
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    specs = {i: json.loads(spec) for i, spec in SPEC.findall(Path(page_path).read_text())}
    for v in views:
        spec = specs.get(v["id"], {})
        titles = axis_titles(spec) if spec else []
        title = spec.get("title", {})
        title = title.get("text", title) if isinstance(title, dict) else title
        print(f"{v['kind']:5} {'ok ' if v['ok'] else 'BAD'} {title or v['id'][-40:]!s:55} {titles}")
        if not v["ok"]:
            problems.append(f"{v['id']} did not render")
        if {"step", "y"} & set(titles):
            problems.append(f"{v['id']} has an axis titled step or y")
    problems += [f"network request: {u}" for u in requests]
    problems += [f"page error: {e}" for e in errors]
    print(f"{len(views)} plots; screenshot {screenshot}")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems or not views else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
