"""The team stack: PostgreSQL, SeaweedFS (S3), an MLflow server, a Prefect server and a Dask
cluster, defined once (services) and run natively (native, `vqa stack`) or by docker compose
(compose, docker/compose.yaml); team: how the pipeline switches to it from the environment."""
