"""Where a person opens what a run recorded: MLflow UI addresses and run descriptions.

MLflow 3.17's UI opens an experiment on its GenAI overview (traces), which is empty for us; the
runs table is at ``#/experiments/<id>/runs``. Run and model pages are
``#/experiments/<id>/runs/<run id>`` and ``#/experiments/<id>/models/<model id>``. Descriptions
(the ``mlflow.note.content`` tag, markdown) link with these relative addresses, so the links work
whichever host serves the UI.
"""

from __future__ import annotations

from collections.abc import Mapping

# Where `mlflow ui` listens when started as README says (bound to loopback).
UI_HOST, UI_PORT = "127.0.0.1", 5000
DESCRIPTION_TAG = "mlflow.note.content"


def ui_base(tracking_uri: str) -> str:
    """The UI's address: the tracking server itself, or where ``mlflow ui`` listens by default."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return f"http://{UI_HOST}:{UI_PORT}"


def runs_table(experiment_id: str) -> str:
    """Relative address of the experiment's runs table."""
    return f"#/experiments/{experiment_id}/runs"


def run_page(experiment_id: str, run_id: str) -> str:
    """Relative address of a run's page."""
    return f"#/experiments/{experiment_id}/runs/{run_id}"


def model_page(experiment_id: str, model_id: str) -> str:
    """Relative address of a logged model's page."""
    return f"#/experiments/{experiment_id}/models/{model_id}"


def url(tracking_uri: str, relative: str) -> str:
    """Absolute address of a relative UI address (for the console)."""
    return f"{ui_base(tracking_uri)}/{relative}"


def ui_command(tracking_uri: str) -> str:
    """The command that serves the UI for ``tracking_uri`` (none needed for a server)."""
    if tracking_uri.startswith(("http://", "https://")):
        return ""
    return f"mlflow ui --backend-store-uri {tracking_uri} --host {UI_HOST} --port {UI_PORT}"


def description(experiment_id: str, text: str, links: Mapping[str, tuple[str, str | None]]) -> str:
    """A run description: ``text`` then one markdown link per known id.

    Args:
        experiment_id: Experiment of the linked runs and models.
        text: First paragraph (what the run did).
        links: ``label -> ("run" | "model", id)``; entries whose id is None are left out.
    """
    pages = {"run": run_page, "model": model_page}
    lines = [text, ""]
    lines += [
        f"- {label}: [{ident}]({pages[kind](experiment_id, ident)})"
        for label, (kind, ident) in links.items()
        if ident
    ]
    return "\n".join(lines)


def describe(experiment_id: str, text: str, links: Mapping[str, tuple[str, str | None]]) -> None:
    """Set the active run's :func:`description`."""
    import mlflow

    mlflow.set_tag(DESCRIPTION_TAG, description(experiment_id, text, links))


def backbone_name(model_config: Mapping) -> str:
    """A short name for a model config: its ``arch``, else its factory's name."""
    factory = str(model_config.get("_target_", "model")).rpartition(".")[2]
    return str(model_config.get("arch") or factory)
