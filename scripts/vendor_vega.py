"""Build .dvc/plots/offline.html: DVC's plots page template with Vega inlined (no CDN).

`dvc plots show` writes an HTML page that loads Vega, Vega-Lite and vega-embed from a CDN, so
offline (or behind a firewall) it shows nothing but PNGs. DVC takes another page template
(`plots.html_template` in .dvc/config, set to this file); this one carries the three libraries'
minified browser builds, taken with `npm pack` from the npm registry at the pinned versions below,
so the page renders with the network off. Re-run after changing a version:

    python scripts/vendor_vega.py

Needs npm (any recent version) and network access to the npm registry; nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# Vega-Lite 5 specs are what DVC 3's templates produce; vega-embed 6 expects vega 5 + vega-lite 5.
PACKAGES = {
    "vega": ("5.33.1", "build/vega.min.js"),
    "vega-lite": ("5.23.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.29.0", "build/vega-embed.min.js"),
}
OUT = Path(__file__).resolve().parent.parent / ".dvc" / "plots" / "offline.html"
# DVC replaces these in the template; a library containing one would be corrupted.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{{refresh_tag}}
<title>Graftlab plots</title>
<!-- Built by scripts/vendor_vega.py: {credits}.
     Inlined so that this page needs no network. Each library is under the BSD 3-Clause
     license; see https://github.com/vega for the license texts. -->
{scripts}
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; }}
body > div {{ display: inline-block; vertical-align: top; margin: 0 1.5rem 1.5rem 0; }}
</style>
</head>
<body>
<h1>Graftlab plots</h1>
{{plot_divs}}
</body>
</html>
"""


def pack(name: str, version: str, folder: Path) -> dict:
    """``npm pack`` one package into ``folder``; return its package.json and the tarball path."""
    out = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(out.stdout)[0]
    return {"tarball": folder / info["filename"], "integrity": info["integrity"]}


def read_member(tarball: Path, member: str) -> str:
    with tarfile.open(tarball) as tar:
        return tar.extractfile(f"package/{member}").read().decode("utf-8")


def main() -> None:
    scripts, credits = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (version, member) in PACKAGES.items():
            packed = pack(name, version, Path(tmp))
            meta = json.loads(read_member(packed["tarball"], "package.json"))
            code = read_member(packed["tarball"], member)
            bad = [p for p in (*PLACEHOLDERS, "</script") if p in code]
            if bad:
                sys.exit(f"{name}@{version}/{member} contains {bad}: cannot inline it")
            credits.append(f"{name} {version} ({meta['license']}, {packed['integrity']})")
            scripts.append(f"<script>/* {name} {version}, {meta['license']} */\n{code}\n</script>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(PAGE.format(credits="; ".join(credits), scripts="\n".join(scripts)))
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB): {', '.join(credits)}")


if __name__ == "__main__":
    main()
