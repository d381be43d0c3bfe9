"""Server-side automations the setup command keeps in place: crash detection and stuck alerts.

Both are Prefect's own machinery (proactive event triggers evaluated by the server), so they
work when no worker is alive, which is exactly when they are needed:

- ``phx-zombie-runs``: a flow run of ours whose process stopped sending heartbeats (machine
  lost, ``kill -9``) is marked Crashed, so it stops counting as running and the next run of
  the same properties starts clean. Flow runs beat every 30 s (``prefect.yaml`` sets
  ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` for every deployment).
- ``phx-stuck-runs``: a property run (child deployment) Running for longer than the stuck
  threshold raises an alert: the automation's firing shows in the UI's event feed, and when an
  alert webhook is configured the alert is POSTed there. Parent runs are not watched: over a
  long list they legitimately run for hours, and they are stuck exactly when a child is.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.automations import (
    AutomationCore,
    ChangeFlowRunState,
    DoNothing,
    EventTrigger,
    Posture,
    SendNotification,
)
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType

from phx_images.settings import Settings

ZOMBIE_AUTOMATION = "phx-zombie-runs"
STUCK_AUTOMATION = "phx-stuck-runs"
ALERT_BLOCK = "phx-alerts"
PROJECT_TAG = "phx"  # every deployment in prefect.yaml carries it
CHILD_TAG = "child"  # the per-property deployment

TERMINAL_EVENTS = {f"prefect.flow-run.{name}"
                   for name in ("Completed", "Failed", "Cancelled", "Crashed")}


def _tagged(tag: str) -> dict[str, str]:
    return {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}


def zombie_automation(after_s: float) -> AutomationCore:
    return AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="Marks a phx flow run Crashed when its process stops sending heartbeats.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tagged(PROJECT_TAG),
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *TERMINAL_EVENTS},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_s),
        ),
        # Not forced: orchestration then refuses it for a run that already ended. The
        # trigger can miss a run's last event (the server drops events it fails to record
        # under load) and would otherwise turn a finished or cancelled run into a crash.
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"no heartbeat for {after_s:.0f} s: the process running it is gone",
        )],
    )


def stuck_automation(after_s: float, alert_block_id: Any | None) -> AutomationCore:
    limit = f"{after_s / 60:.0f} min" if after_s >= 120 else f"{after_s:.0f} s"
    body = ("Property run {{ flow_run.name }} ({{ flow_run.id }}) has been Running for more "
            f"than {limit}. Open it in the Prefect UI, or cancel it with "
            "`phx-images cancel {{ flow_run.id }}`.")
    action: Any = (SendNotification(block_document_id=alert_block_id,
                                    subject="phx: stuck property run", body=body)
                   if alert_block_id is not None else DoNothing())
    return AutomationCore(
        name=STUCK_AUTOMATION,
        description=f"Alerts when a property run stays Running for more than {after_s:.0f} s.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_tagged(CHILD_TAG),
            after={"prefect.flow-run.Running"},
            expect=TERMINAL_EVENTS,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=after_s),
        ),
        actions=[action],
    )


async def save_alert_block(settings: Settings) -> Any | None:
    """The webhook the stuck alert posts to; its URL is kept as a block secret (webhook URLs
    often carry a token) and never appears in the block's plain fields."""
    url = settings.orchestration.alert_webhook_url
    if url is None:
        return None
    block = CustomWebhookNotificationBlock(
        name=ALERT_BLOCK, url="{{url}}", secrets={"url": url.get_secret_value()},
        json_data={"text": "{{subject}}: {{body}}"},
    )
    return await block.asave(ALERT_BLOCK, overwrite=True)


async def ensure_automations(settings: Settings) -> list[str]:
    """Create or replace both automations with the current thresholds."""
    orchestration = settings.orchestration
    alert_block_id = await save_alert_block(settings)
    wanted = [zombie_automation(orchestration.zombie_after_s),
              stuck_automation(orchestration.stuck_after_s, alert_block_id)]
    lines = []
    async with get_client() as client:
        for automation in wanted:
            existing = await client.read_automations_by_name(automation.name)
            for old in existing[1:]:  # a concurrent setup may have created a twin
                await client.delete_automation(old.id)
            if existing:
                await client.update_automation(existing[0].id, automation)
            else:
                await client.create_automation(automation)
            lines.append(f"automation {automation.name}: within "
                         f"{automation.trigger.within.total_seconds():.0f} s"  # type: ignore[union-attr]
                         + (" -> alert webhook" if automation.name == STUCK_AUTOMATION
                            and alert_block_id else ""))
    return lines
