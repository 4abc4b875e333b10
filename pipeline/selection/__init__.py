"""Unsupervised model selection: validators that score a model without target labels.

In the transductive setting no target label may choose anything: not the hyperparameters, not the
stopping epoch, not the method. A validator scores a model from what it outputs on unlabelled
target inputs (entropy, information maximisation, soft neighbourhood density, batch nuclear
norm) or on labelled *source* data (source validation accuracy, deep embedded validation); higher
is always better. Musgrave, Belongie & Lim ("Three New Validators and a Large-Scale Benchmark
Ranking for Unsupervised Domain Adaptation", 2022) compare them at scale; the evaluate stage
reports how well each one ranks our own models (pipeline.selection.picks).
"""

from pipeline.selection.base import EpochOutputs, Validator

__all__ = ["EpochOutputs", "Validator"]
