"""Run configuration: the config tree (``configs/``) and its merge order (``loader``)."""
