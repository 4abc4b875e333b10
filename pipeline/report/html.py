"""The report as one self-contained HTML file: the markdown report with its figures embedded.

MLflow's artifact viewer shows ``report.md`` as text, without its images (they are separate
files); it renders an ``.html`` artifact, and a page whose PNGs are inline ``data:`` URIs needs no
other file and no network. The markdown comes from :mod:`pipeline.report.markdown`, converted with
markdown-it-py (CommonMark plus tables), so both files always say the same thing.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto;
       padding: 0 1rem; line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #c9c9c9; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f1f3f5; }
img { max-width: 100%; height: auto; }
code { background: #f1f3f5; padding: 0 0.2rem; }
"""


def _inline_images(tokens: list, folder: Path) -> None:
    """Point every image whose file lies in ``folder`` at a ``data:`` URI of its bytes."""
    for token in tokens:
        for child in token.children or []:
            if child.type != "image":
                continue
            src = str(child.attrGet("src") or "")
            path = folder / src
            if "://" in src or src.startswith("data:") or not path.is_file():
                continue
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            child.attrSet("src", f"data:{mime};base64,{data}")


def render_html(markdown_text: str, folder: Path, title: str = "Graftlab report") -> str:
    """``markdown_text`` as a standalone HTML page, images from ``folder`` embedded."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    env: dict = {}
    tokens = md.parse(markdown_text, env)
    _inline_images(tokens, folder)
    body = md.renderer.render(tokens, md.options, env)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )


def write_html(folder: Path, markdown_name: str = "report.md") -> Path:
    """Write ``report.html`` beside ``folder/markdown_name`` (its images embedded); return it."""
    text = (folder / markdown_name).read_text()
    first = next((line for line in text.splitlines() if line.startswith("# ")), "# Report")
    out = folder / "report.html"
    out.write_text(render_html(text, folder, title=first[2:].strip()))
    return out
