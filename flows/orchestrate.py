"""`vqa orchestrate setup`: the work pools and concurrency limit the deployments in prefect.yaml
use, created (or brought back to these settings) on the Prefect server of PREFECT_API_URL.
Idempotent: run it again after changing nothing, and nothing changes."""
from __future__ import annotations

from flows.w2s import GPU_TAG

POOLS = {"cpu": None, "gpu": 1}  # work pool -> concurrency limit (flow runs at once; None: no limit)


def setup(gpu_slots: int = 1) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    done = []
    with get_client(sync_client=True) as client:
        for name, limit in POOLS.items():
            limit = gpu_slots if name == "gpu" else limit
            pool = client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template, concurrency_limit=limit),
                overwrite=True)
            done.append(f"work pool {pool.name!r} (process), concurrency limit {pool.concurrency_limit}")
        # Tag limit: at most gpu_slots task runs tagged `gpu` (training) at once, on any pool or
        # in-process; Prefect keeps it as the global concurrency limit "tag:gpu".
        client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=gpu_slots)
        done.append(f"tag concurrency limit {GPU_TAG!r}: {gpu_slots}")
        done.append(f"server: {client.api_url}")
    return done
