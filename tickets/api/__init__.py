"""The ingestion API (/api/v1/): integrations upsert tickets and append events.

Thin: every write goes through ``tickets.actions`` (the same functions as the admin, the queue
and imports), so clocks are re-synced and boards published. Modules: ``errors``, ``auth``,
``schemas`` (typed bodies; the OpenAPI document is generated from them), ``ingest`` (the
service the endpoints call) and ``endpoints`` (mounted by ``slaboard.api``).
"""
