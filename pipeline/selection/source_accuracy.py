"""Source validation accuracy: the baseline validator.

Accuracy on a held-out labelled *source* split. It ignores the target altogether, so it cannot see
how far adaptation moved the target; You, Wang, Long & Jordan ("Towards Accurate Model Selection
in Deep Unsupervised Domain Adaptation", ICML 2019) show it is biased under covariate shift, yet
Musgrave et al. (2022) find it often competitive.
"""

from __future__ import annotations

from pipeline.selection.base import EpochOutputs, Validator


class SourceAccuracy(Validator):
    """Accuracy on the labelled source validation split."""

    needs_source = True

    def __call__(self, out: EpochOutputs) -> float:
        return float((out.source_logits.argmax(1) == out.source_labels).double().mean())
