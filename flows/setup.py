"""Idempotent setup of everything the flows rely on: work pool, limits, blocks, variables,
automations.

Run by ``phx-images setup`` (and ``make demo``) before deploying. Running it again changes
nothing but what the current ``PHX_`` settings changed: limits are upserted, blocks and
variables overwritten with the current values, the work pool created only when missing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.filesystems import LocalFileSystem
from prefect.variables import Variable

from blocks import BLOCK_TYPES, ImageStore, ListingSource, ProxyPool, SharedResultStorage
from flows.automations import ensure_automations
from flows.config import (
    ASSESSOR_TOKEN_BLOCK,
    DATABASE_URL_BLOCK,
    PROXY_BLOCK,
    RESULT_STORAGE_VARIABLE,
    SIM_ORIGINS_VARIABLE,
    STORE_BLOCK,
)
from phx_images.net.client import asset_source_name
from phx_images.settings import SOURCE_NAMES, Settings
from tasks.discover import source_tag


async def ensure_work_pool(name: str) -> bool:
    """Create the process work pool if missing; True when it was created."""
    from prefect.workers.process import ProcessWorker

    async with get_client() as client:
        try:
            await client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            await client.create_work_pool(WorkPoolCreate(
                name=name, type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            ))
        except ObjectAlreadyExists:
            return False
        return True


#: Work queues of the pool, polled in priority order (1 first). Property runs come first so a
#: worker always drains the children its parents wait for; extraction runs (parents) are
#: capped by ``parallel_runs``, or parents could fill every worker slot and wait forever.
PROPERTY_QUEUE = "properties"
RUN_QUEUE = "runs"


async def ensure_work_queues(settings: Settings) -> list[str]:
    """Create or update the pool's two queues (names match prefect.yaml)."""
    pool = settings.orchestration.work_pool
    wanted = {PROPERTY_QUEUE: {"priority": 1, "concurrency_limit": None},
              RUN_QUEUE: {"priority": 2,
                          "concurrency_limit": settings.orchestration.parallel_runs}}
    lines = []
    async with get_client() as client:
        for name, options in wanted.items():
            try:
                queue = await client.read_work_queue_by_name(name, work_pool_name=pool)
            except ObjectNotFound:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_work_queue(name, work_pool_name=pool, **options)
            else:
                await client.update_work_queue(queue.id, **options)
            limit = options["concurrency_limit"]
            lines.append(f"work queue {name}: priority {options['priority']}, "
                         f"{'no limit' if limit is None else f'{limit} at a time'}")
    return lines


async def ensure_limits(settings: Settings) -> list[str]:
    """Per-source tag limits: concurrent task runs against each source and its photo CDN,
    across every worker. The request ceilings are not Prefect limits: they live in the
    request ledger (``phx_images/net/ledger_sql.py``), which costs no API call per request."""
    done: list[str] = []
    async with get_client() as client:
        for name in SOURCE_NAMES:
            source = settings.source(name)
            cdn = asset_source_name(name)
            for key, concurrency, rps in (
                (name, source.max_concurrency, source.max_rps),
                (cdn, source.asset_max_concurrency, source.asset_max_rps),
            ):
                await client.create_concurrency_limit(tag=source_tag(key),
                                                      concurrency_limit=concurrency)
                done.append(f"{source_tag(key)}={concurrency} (ceiling {rps}/s)")
    return done


async def save_blocks(settings: Settings) -> list[str]:
    """Register the block types and save the current settings into them."""
    saved: list[str] = []
    for block_type in (*BLOCK_TYPES, Secret, LocalFileSystem):
        await block_type.aregister_type_and_schema()
    for name in SOURCE_NAMES:
        source = settings.source(name)
        await ListingSource(
            enabled=source.enabled, base_url=source.base_url, asset_urls=source.asset_urls,
            max_rps=source.max_rps, max_concurrency=source.max_concurrency,
            max_retries=source.max_retries, timeout_s=source.timeout_s,
        ).asave(name, overwrite=True)
        saved.append(f"listing-source/{name}")
    if settings.database_url is not None:
        await Secret(value=settings.database_url).asave(DATABASE_URL_BLOCK, overwrite=True)
        saved.append(f"secret/{DATABASE_URL_BLOCK}")
    if settings.assessor.token is not None:
        await Secret(value=settings.assessor.token).asave(ASSESSOR_TOKEN_BLOCK, overwrite=True)
        saved.append(f"secret/{ASSESSOR_TOKEN_BLOCK}")
    await ProxyPool(proxies=settings.proxies).asave(PROXY_BLOCK, overwrite=True)
    saved.append(f"proxy-pool/{PROXY_BLOCK}")
    options = settings.store_options
    client_kwargs = options.get("client_kwargs") or {}
    store_url = settings.store_url
    if "://" not in store_url:
        store_url = str(Path(store_url).resolve())
    await ImageStore(
        url=store_url,
        endpoint_url=client_kwargs.get("endpoint_url") if isinstance(client_kwargs, dict) else None,
        access_key_id=options.get("key"),  # type: ignore[arg-type]
        secret_access_key=options.get("secret"),  # type: ignore[arg-type]
    ).asave(STORE_BLOCK, overwrite=True)
    saved.append(f"image-store/{STORE_BLOCK}")
    saved.append(await save_result_storage(settings))
    await Variable.aset(SIM_ORIGINS_VARIABLE, list(settings.allow_private_origins),
                        overwrite=True)
    return saved


async def save_result_storage(settings: Settings) -> str:
    """The block the download cache persists results to (shared storage for several
    machines, a local folder otherwise); its slug is the orchestration setting."""
    slug = settings.orchestration.result_storage_block
    block_type, _, name = slug.partition("/")
    url = settings.orchestration.result_storage_url
    if block_type == "shared-result-storage":
        if not url:
            raise ValueError("PHX_ORCHESTRATION__RESULT_STORAGE_URL is required for "
                             f"result storage {slug!r}")
        await SharedResultStorage(basepath=url, settings=dict(settings.store_options)).asave(
            name, overwrite=True)
    elif block_type == "local-file-system":
        path = Path(url) if url else settings.data_dir / "prefect-results"
        path.mkdir(parents=True, exist_ok=True)
        await LocalFileSystem(basepath=str(path.resolve())).asave(name, overwrite=True)
    else:
        raise ValueError(f"result storage block {slug!r}: expected local-file-system/NAME or "
                         "shared-result-storage/NAME")
    await Variable.aset(RESULT_STORAGE_VARIABLE, slug, overwrite=True)
    return slug


async def run_setup(settings: Settings | None = None) -> list[str]:
    """Everything, in order; returns one line per thing set up (for the CLI to print)."""
    settings = settings or Settings()
    lines = []
    created = await ensure_work_pool(settings.orchestration.work_pool)
    lines.append(f"work pool {settings.orchestration.work_pool}: "
                 f"{'created' if created else 'exists'}")
    lines += await ensure_work_queues(settings)
    lines += [f"limit {x}" for x in await ensure_limits(settings)]
    lines += [f"block {x}" for x in await save_blocks(settings)]
    lines += await ensure_automations(settings)
    return lines
