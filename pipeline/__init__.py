"""Graftlab: measure whether, how much and when transfer learning helps.

The library knows nothing of file layout or Hydra: functions take plain typed arguments and built
objects, and return results. The DVC stages in ``stages/`` wire it to ``params.yaml`` and
``outputs/``.
"""

import os

# OpenMP reads its wait policy when torch loads it: waiting passively keeps several stage
# processes on the same cores cheap now that each uses a fixed thread count (see
# pipeline.threads). A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
