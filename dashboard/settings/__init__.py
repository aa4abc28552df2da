"""The Z-API settings: stored sealed and audited, applied to Z-API's webhooks, tested end to end."""
