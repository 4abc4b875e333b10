"""The evaluation report: plots (matplotlib) and a markdown summary."""
