"""Graftlab: measure whether, how much and when transfer learning helps.

The library knows nothing of file layout or Hydra: functions take plain typed arguments and built
objects, and return results. The DVC stages in ``stages/`` wire it to ``params.yaml`` and
``outputs/``.
"""

__version__ = "0.1.0"
