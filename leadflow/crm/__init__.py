"""Back to the CRM: the changes leadflow makes, queued in the outbox and posted as webhooks."""

from leadflow.crm.channel import WebhookChannel
from leadflow.crm.updates import WEBHOOK_CHANNEL, crm_update_row
from leadflow.crm.webhook import WebhookTransport, sign

__all__ = ["WEBHOOK_CHANNEL", "WebhookChannel", "WebhookTransport", "crm_update_row", "sign"]
