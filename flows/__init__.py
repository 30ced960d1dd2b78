"""Prefect flows: thin orchestration over the DVC stages, which run `vqa` steps."""
