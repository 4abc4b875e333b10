"""Every run records the process that owns it, so no run is left RUNNING after that process ends.

A stage that fails or is interrupted ends its own runs (FAILED, or KILLED for an interrupt) before
it exits; a process killed outright (SIGKILL, a lost machine) cannot, so the next run of the same
stage on the same host marks the RUNNING runs of dead owners KILLED, as the tune stage already
reaps the trials of dead workers. Their LoggedModels still PENDING are marked FAILED.
"""

from __future__ import annotations

import logging

from pipeline.processes import Owner, current

OWNER_TAG = "graftlab.owner"
STAGE_TAG = "graftlab.stage"
log = logging.getLogger(__name__)


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the run's owner (host, pid and start time)."""
    return {OWNER_TAG: current().token}


def _runs(client: object, experiment_id: str, query: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _fail_pending_models(client: object, experiment_id: str, run_ids: list[str]) -> None:
    from mlflow.entities import LoggedModelStatus

    if not run_ids:
        return
    quoted = ", ".join(f"'{r}'" for r in run_ids)
    query = f"source_run_id IN ({quoted}) AND status = 'PENDING'"
    for model in client.search_logged_models([experiment_id], filter_string=query):
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)


def sweep_dead_runs(experiment_id: str, stage: str) -> list[str]:
    """Mark KILLED every RUNNING run of ``stage`` whose owner process on this host has ended.

    Runs owned by live processes (parallel workers) or by processes on other hosts are left
    alone. Returns the ids of the runs it ended.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    query = f"tags.`{STAGE_TAG}` = '{stage}' AND attributes.status = 'RUNNING'"
    ended = []
    for run in _runs(client, experiment_id, query):
        owner = Owner.parse(run.data.tags.get(OWNER_TAG, ""))
        if owner is None or owner.alive() is not False:
            continue
        client.set_terminated(run.info.run_id, "KILLED")
        ended.append(run.info.run_id)
    _fail_pending_models(client, experiment_id, ended)
    if ended:
        log.warning("%s: marked %d run(s) of dead processes KILLED", stage, len(ended))
    return ended


def end_own_runs(experiment_id: str, status: str, since_ms: int | None = None) -> list[str]:
    """End this process's runs that are still RUNNING with ``status`` (FAILED or KILLED).

    With ``since_ms`` (when an interrupt arrived), runs of this process that ended FAILED at or
    after that moment are relabelled ``status`` too: the ``with mlflow.start_run()`` blocks that
    unwound the interrupt marked them FAILED, but nothing in them failed.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    query = f"tags.`{OWNER_TAG}` = '{current().token}'"
    ended = []
    for run in _runs(client, experiment_id, query):
        info = run.info
        unwound = since_ms is not None and info.status == "FAILED"
        if info.status == "RUNNING" or (unwound and (info.end_time or 0) >= since_ms):
            end = None if info.status == "RUNNING" else info.end_time
            client.set_terminated(info.run_id, status, end_time=end)
            ended.append(info.run_id)
    _fail_pending_models(client, experiment_id, ended)
    return ended
