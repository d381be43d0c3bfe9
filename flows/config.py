"""Settings for a flow run: the ``PHX_`` environment with the deployment's blocks on top.

Why blocks win over the environment: a worker on another machine carries no project
environment; what an operator saved in the UI (source URLs, ceilings, proxies, the store, the
assessor token) must reach every worker the same way. A block that was never saved simply leaves
the environment's value in place, so the local setup works without any block.
"""

from __future__ import annotations

import logging

from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from blocks import ImageStore, ListingSource, ProxyPool
from phx_images.settings import SOURCE_NAMES, Settings

log = logging.getLogger(__name__)

STORE_BLOCK = "phx-store"
PROXY_BLOCK = "phx-proxies"
ASSESSOR_TOKEN_BLOCK = "assessor-token"
DATABASE_URL_BLOCK = "phx-database-url"
SIM_ORIGINS_VARIABLE = "phx-allow-private-origins"
RESULT_STORAGE_VARIABLE = "phx-result-storage-block"


async def _load(block_type: type, name: str) -> object | None:
    try:
        return await block_type.aload(name)  # type: ignore[attr-defined]
    except (ObjectNotFound, ValueError):
        return None


async def load_run_settings() -> Settings:
    """Environment settings overlaid with every saved block (sources, proxies, store, token)."""
    from prefect.variables import Variable

    settings = Settings()
    updates: dict[str, object] = {}
    for name in SOURCE_NAMES:
        block = await _load(ListingSource, name)
        if isinstance(block, ListingSource):
            updates[name] = block.apply(settings.source(name))
    token = await _load(Secret, ASSESSOR_TOKEN_BLOCK)
    if isinstance(token, Secret):
        base = updates.get("assessor", settings.assessor)
        updates["assessor"] = base.model_copy(  # type: ignore[union-attr]
            update={"token": SecretStr(str(token.get()))}
        )
    database = await _load(Secret, DATABASE_URL_BLOCK)
    if isinstance(database, Secret):  # the request ledger every worker must share
        updates["database_url"] = SecretStr(str(database.get()))
    proxies = await _load(ProxyPool, PROXY_BLOCK)
    if isinstance(proxies, ProxyPool) and proxies.proxies:
        updates["proxies"] = list(proxies.proxies)
    store = await _load(ImageStore, STORE_BLOCK)
    if isinstance(store, ImageStore):
        updates["store_url"] = store.url
        updates["store_options"] = store.storage_options()
    private = await Variable.aget(SIM_ORIGINS_VARIABLE, default=None)
    if private:
        updates["allow_private_origins"] = list(private)
    result_storage = await Variable.aget(RESULT_STORAGE_VARIABLE, default=None)
    if result_storage:  # every worker must cache into the same, shared, storage
        updates["orchestration"] = settings.orchestration.model_copy(
            update={"result_storage_block": str(result_storage)})
    return settings.model_copy(update=updates) if updates else settings
