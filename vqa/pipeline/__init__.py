"""The pipeline steps that dvc.yaml stages and Prefect tasks both run (one implementation)."""
