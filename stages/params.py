"""Recompose params.yaml from conf/ (what `dvc exp run` does), optionally with Hydra overrides.

python -m stages.params                      # after editing conf/
python -m stages.params model=resnet18       # write a variant (then `dvc repro`)
python -m stages.params --check              # exit 1 if params.yaml is stale
"""

from __future__ import annotations

import sys

import yaml
from omegaconf import OmegaConf

from stages._shell import PARAMS, compose_conf


def main() -> None:
    args = sys.argv[1:]
    check = "--check" in args
    composed = compose_conf([a for a in args if a != "--check"])
    text = OmegaConf.to_yaml(OmegaConf.create(composed))  # byte-identical to DVC's dump
    if check:
        current = yaml.safe_load(PARAMS.read_text()) if PARAMS.exists() else None
        if current != composed:
            print(
                f"{PARAMS} is out of date with conf/; run: python -m stages.params", file=sys.stderr
            )
            sys.exit(1)
        return
    PARAMS.write_text(text)
    print(f"wrote {PARAMS}")


if __name__ == "__main__":
    main()
