"""Walk the lineage in the MLflow UI by clicking, in headless Chromium, and screenshot each page.

Not part of the test suite (it needs a browser and a served UI; tests/test_user_view.py checks the
same lineage through MlflowClient). Run it on a repository after `dvc repro`, with the network off
to show the UI needs none, e.g. as root:

    unshare -n sh -c 'ip link set lo up && python tests/browser/check_mlflow_ui.py . /tmp/ui'

It starts `mlflow ui` on 127.0.0.1 for the repository's mlflow.db, opens the runs table (the address
the stages print), then only clicks: evaluate run -> transfer model -> its arm run -> source model
-> pretrain run -> a dataset (its final path and full sha256) -> config.yaml, checking each page
shows what it should. It also opens the Models tab, sorts the per-model score runs by test_acc and
opens report/report.html in the artifact viewer. (MLflow 3.17's Models tab shows test_acc and
val_acc for every model but cannot sort by a metric: that switch is compiled off in its UI build.
The runs table sorts the score runs instead; MlflowClient.search_logged_models sorts the models.)
Screenshots go to the output folder; exits 1 on the first step that fails.
Uses Playwright's Python API driving the system's Chromium (Debian `chromium`); nothing is
downloaded.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from browser import launch

PORT = int(os.environ.get("GRAFTLAB_UI_PORT", "5077"))  # a UI already listening there is reused
BASE = f"http://127.0.0.1:{PORT}/"


def serve(repo: Path) -> subprocess.Popen | None:
    """``mlflow ui`` on loopback for the repository's store; returns once it answers."""
    try:
        urllib.request.urlopen(BASE, timeout=2)
        return None
    except OSError:
        pass
    cmd = ["mlflow", "ui", "--backend-store-uri", f"sqlite:///{(repo / 'mlflow.db').resolve()}"]
    cmd += ["--host", "127.0.0.1", "--port", str(PORT), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(120):
        try:
            urllib.request.urlopen(BASE, timeout=2)
            return proc
        except OSError:
            time.sleep(1)
    proc.terminate()
    sys.exit("mlflow ui did not start")


ROW_ORDER = """
() => Array.from(document.querySelectorAll('[role=row][row-index]'))
  .map(r => [Number(r.getAttribute('row-index')), r.querySelector('a[href*="/runs/"]')])
  .filter(([, a]) => a && a.textContent.startsWith('score '))
  .sort((x, y) => x[0] - y[0]).map(([, a]) => a.textContent.trim())
"""


def score_filter(ev_run: str) -> str:
    """The latest evaluate run's score runs (a store holding several experiments has more)."""
    return f"metrics.test_acc > 0 and tags.mlflow.parentRunId = '{ev_run}'"


def expected_order(repo: Path, exp: str, ev_run: str) -> list[str]:
    """Score run names by test_acc, best first, as the store has them."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{(repo / 'mlflow.db').resolve()}")
    runs = client.search_runs([exp], score_filter(ev_run), order_by=["metrics.test_acc DESC"])
    return [r.info.run_name for r in runs]


class Walk:
    """One browser page, a folder of numbered screenshots, and checks that stop the walk."""

    def __init__(self, page, out: Path) -> None:
        self.page, self.out, self.n = page, out, 0

    def shot(self, name: str, scroll_to: str | None = None) -> None:
        """Screenshot (pages scroll inside a panel: ``scroll_to`` brings a text into view)."""
        self.n += 1
        if scroll_to:
            self.page.get_by_text(scroll_to).first.scroll_into_view_if_needed()
        self.page.wait_for_timeout(1500)
        path = self.out / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"  screenshot {path}")

    def wait_text(self, text: str, timeout: float = 60_000) -> None:
        self.page.get_by_text(text, exact=True).first.wait_for(timeout=timeout)

    def click_link(self, href_part: str, text: str | None = None) -> None:
        """Click the first visible link whose address contains ``href_part`` (and shows
        ``text``)."""
        links = self.page.locator(f'a[href*="{href_part}"]')
        if text is not None:
            links = links.filter(has_text=text)
        links.first.wait_for(timeout=60_000)
        print(f"  click {links.first.inner_text()[:60]!r} -> ...{href_part[-40:]}")
        links.first.click()

    def expect(self, what: str, *needles: str, timeout: float = 30.0) -> None:
        """Wait (up to ``timeout`` s) until the page shows every needle."""
        end = time.monotonic() + timeout
        while True:
            body = self.page.inner_text("body")
            missing = [n for n in needles if n not in body]
            if not missing or time.monotonic() > end:
                break
            self.page.wait_for_timeout(500)
        if missing:
            self.shot("FAILED")
            sys.exit(f"FAILED {what}: page lacks {missing}")
        print(f"ok {what}")


def close_assistant(page) -> None:
    """MLflow 3.17 opens an assistant side panel; close it so pages have room."""
    page.wait_for_timeout(1000)
    close = page.locator('button[aria-label="Close"]')
    if close.count() and close.last.is_visible():
        close.last.click()


def pretrain_commit(repo: Path, run_id: str) -> str:
    """The git commit the pretrain run recorded, checked to be in this checkout's history (it
    precedes HEAD when `dvc repro` ran before its lock file was committed)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{(repo / 'mlflow.db').resolve()}"
    commit = MlflowClient(uri).get_run(run_id).data.tags["mlflow.source.git.commit"]
    ancestor = ["git", "merge-base", "--is-ancestor", commit, "HEAD"]
    if subprocess.run(ancestor, cwd=repo).returncode != 0:
        sys.exit(f"FAILED pretrain run: its commit {commit} is not in this checkout's history")
    return commit


def main(repo_arg: str, out_arg: str) -> int:
    from playwright.sync_api import sync_playwright

    repo, out = Path(repo_arg), Path(out_arg)
    out.mkdir(parents=True, exist_ok=True)
    index = json.loads((repo / "outputs/transfer/models/index.json").read_text())
    ev_run = json.loads((repo / "outputs/evaluate/report/mlflow.json").read_text())["run_id"]
    card = json.loads((repo / "outputs/prepare/source/card.json").read_text())
    row = next(r for r in index["runs"] if r["arm"] == index["primary"])
    source, exp = index["source"], index["experiment_id"]
    commit = pretrain_commit(repo, source["run_id"])
    server = serve(repo)
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 2200, "height": 1100})
            requests: list[str] = []
            page.on(
                "request",
                lambda r: not r.url.startswith(("data:", "blob:", BASE)) and requests.append(r.url),
            )
            w = Walk(page, out)
            print("runs table (the address the stages print)")
            page.goto(f"{BASE}#/experiments/{exp}/runs")
            w.wait_text("evaluate")
            close_assistant(page)
            w.expect("runs table lists the stages", "evaluate", "transfer", "pretrain", "prepare")
            w.shot("runs-table")

            w.click_link(f"/runs/{ev_run}", "evaluate")
            w.wait_text("Run ID")
            w.expect(
                "evaluate run: summary metrics, params", "transfer_gain", "evaluate.confidence"
            )
            w.expect("evaluate run: description links", "transfer run", "pretrain run", "tune run")
            w.shot("evaluate-run")

            # the run page lists its input models by id, a page at a time: take a primary-arm
            # model it shows (seed 0's was cut off when its random id sorted late)
            shown = page.eval_on_selector_all(
                'a[href*="/models/"]', "els => els.map(e => e.getAttribute('href'))"
            )
            primary = [r for r in index["runs"] if r["arm"] == index["primary"]]
            row = next((r for r in primary if any(r["model_id"] in h for h in shown)), row)
            w.click_link(f"/models/{row['model_id']}")
            w.wait_text(f"{row['arm']}-seed{row['seed']}")
            w.expect("transfer model: metrics and lineage params", "test_acc", "val_acc")
            w.expect("transfer model: source ids as params", source["model_id"])
            w.shot("transfer-model")

            w.click_link(f"/runs/{row['run_id']}")
            w.wait_text("Run ID")
            w.expect(
                "arm run: logged models, its trained model the output, source model the input",
                "Logged models (2)",
                "Output",
                "Input",
                "source-" + card["name"],
            )
            w.shot("arm-run", scroll_to="Logged models (")

            w.click_link(f"/models/{source['model_id']}", "source-" + card["name"])
            w.wait_text("source-" + card["name"])
            w.expect("source model: data digest param", card["sha256"])
            w.shot("source-model")

            w.click_link(f"/runs/{source['run_id']}")
            w.wait_text("Run ID")
            w.expect("pretrain run: git commit", commit[:7])
            w.shot("pretrain-run")

            page.get_by_text(f"{card['name']}/train", exact=False).first.click()
            sha = card["splits"]["train"]["sha256"]
            w.expect("dataset: final path and full sha256", "outputs/prepare/source", sha)
            w.shot("dataset")
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)

            page.get_by_text("Artifacts", exact=True).first.click()
            page.get_by_text("config.yaml", exact=True).first.click()
            w.expect("pretrain run: resolved config", "pretrain:", "epochs:", "tracking:")
            w.shot("config")

            print("Models tab: test_acc and val_acc on every model")
            page.get_by_text("Model training", exact=True).first.click()
            page.get_by_text("Models", exact=True).first.click()
            w.wait_text("source-" + card["name"])
            close_assistant(page)
            w.expect("models table columns", "test_acc", "test_macro_f1", "val_acc")
            w.shot("models-table")
            # MLflow 3.17's Models tab sorts by creation time only (its sort-by-metric switch is
            # compiled off), so the per-model scores are sorted where the UI can: the runs table,
            # one score run per model, each linking its model.
            print("runs table: score runs sorted by test_acc")
            page.get_by_text("Runs", exact=True).first.click()
            box = page.get_by_placeholder('metrics.rmse < 1 and params.model = "tree"')
            box.fill(score_filter(ev_run))
            box.press("Enter")
            page.get_by_role("button").filter(has_text="Sort:").first.click()
            menu = "[role=menuitem],[role=option],[role=menuitemradio],[role=menuitemcheckbox]"
            page.locator(menu).filter(has_text=re.compile("^test_acc$")).first.click()
            page.keyboard.press("Escape")
            page.wait_for_url(re.compile("orderByKey=metrics"))
            w.expect("runs sorted by test_acc", "Sort: test_acc", "score freeze_k-seed0")
            page.wait_for_timeout(3000)
            names = page.evaluate(ROW_ORDER)  # ag-grid keeps rows in DOM order, not sorted order
            if names != expected_order(repo, exp, ev_run):
                w.shot("FAILED")
                sys.exit(f"FAILED runs sorted by test_acc: {names}")
            print(f"ok order by test_acc: {names}")
            w.shot("runs-sorted-by-test_acc")

            print("report.html in the artifact viewer")
            page.get_by_role("button").filter(has_text="Sort:").first.wait_for()
            page.goto(f"{BASE}#/experiments/{exp}/runs/{ev_run}/artifacts")
            page.get_by_text("report", exact=True).first.click()
            page.get_by_text("report.html", exact=True).first.click()
            page.wait_for_timeout(4000)
            frame = next(
                (f for f in page.frames if "Graftlab evaluation report" in f.content()), None
            )
            if frame is None:
                w.shot("FAILED")
                sys.exit("FAILED report.html: no rendered report frame")
            images = frame.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)")
            print(f"ok report.html rendered with {len(images)} images, widths {images}")
            w.shot("report-html")
            browser.close()
            if requests:
                print("requests outside the UI:", requests)
    finally:
        if server is not None:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
