"""DVC stage entry points (``python -m stages.<name>``)."""

import pipeline  # noqa: F401  (first: sets OpenMP's wait policy before anything loads torch)
