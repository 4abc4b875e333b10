"""prepare: build the source and target datasets at one resolution and normalisation.

Reads params: seed, data, model (its pretrained input, when data.image_size/normalize say
`model`), paths.
Writes <paths.prepare>/{source,target}/: arrays.safetensors (train/val[/test] splits) and card.json
(class counts, split sizes, sha256 digests, recipe); <paths.prepare>/mlflow.json: the run that made
them and their digests (outside the domain folders, so a target-only change leaves the source
folder byte-identical and pretrain is not re-run).
Image domains are converted to data.channels and normalised per channel (data.normalize: the source
training split's statistics, or the model's own). Image datasets read from disk are decoded once
into <paths.decoded> (a DVC output kept between runs); entries this run did not use are removed.
"""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from pipeline.data.images.decode import DecodeCache
from pipeline.data.store import ARRAYS, save_domain
from pipeline.tracking.datasets import log_card_inputs
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.links import describe
from stages._data import prepared_domains
from stages._files import PREPARE_IDS, Layout, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "prepare"


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    started = time.time()
    source, target = prepared_domains(cfg)
    _, experiment_id = use_tracking(cfg)
    params = {"seed": cfg.seed, "data": OmegaConf.to_container(cfg.data, resolve=True)}
    with (
        mlflow.start_run(
            run_name=STAGE, experiment_id=experiment_id, tags=stage_tags(STAGE, ".")
        ) as r,
        stage_output(paths.prepare) as out,
    ):
        mlflow.log_params(flatten(params))
        metrics, ids = {}, {"run_id": r.info.run_id, "experiment_id": experiment_id}
        said = []  # the run's description: it builds on no run, so what it made
        for role, domain in (("source", source), ("target", target)):
            card = save_domain(domain, out / role)
            arrays = paths.domain(role) / ARRAYS  # logged with its final path, not the temp one
            log_card_inputs(card, arrays, {s: f"{role}-{s}" for s in card["splits"]})
            mlflow.log_dict(card, f"data_cards/{role}.json")
            mlflow.set_tag(f"graftlab.{role}_sha256", card["sha256"])
            ids[f"{role}_sha256"] = card["sha256"]
            for split, info in card["splits"].items():
                metrics[f"{role}.{split}_size"] = info["size"]
            sizes = ", ".join(f"{s} {i['size']}" for s, i in card["splits"].items())
            said.append(f"{role} {domain.name} ({sizes}; {len(domain.classes)} classes)")
        describe(experiment_id, f"Prepared the {' and the '.join(said)}.", {})
        mlflow.log_metrics(metrics)
        write_json(out / PREPARE_IDS, ids)
    DecodeCache(Path(cfg.paths.decoded)).prune(started)
    decoded = Path(cfg.paths.decoded)
    decoded.mkdir(parents=True, exist_ok=True)  # a DVC output: never empty, or DVC warns
    (decoded / "README.txt").write_text(
        "Images prepare decoded from files on disk (ImageFolder, torchvision formats), one\n"
        "folder per source; kept between runs and pruned to what the current data uses.\n"
    )
    print(f"prepare: {source.name} and {target.name} in {paths.prepare}")
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
