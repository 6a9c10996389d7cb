"""Notifications and escalation: rules → an outbox of unique rows → email and signed webhooks.

The design (``docs/notifications.md``) in four steps:

1. **Detect.** Every bucket change is made either by the minute tick or by a re-sync, and each
   calls one hook in the same transaction: ``on_tick`` (one ``INSERT … SELECT`` for every
   active rule and channel over the tick's window, nothing at all when no rule is active) or
   ``on_sync`` (the clocks whose bucket got worse in a re-sync). Both write ``Notification``
   rows with ON CONFLICT DO NOTHING on a unique (rule, clock, trigger, repeat, channel) key:
   two beats, overlapping tick windows, a re-sync before the tick, a replayed event — one row.
2. **Schedule.** A row is due at once, or (level 3) N minutes after the breach; a level 3 that
   was sent schedules its next repeat until the clock is acknowledged, met or no longer red.
3. **Deliver.** ``deliver_due`` claims one due row at a time (``SELECT … FOR UPDATE SKIP
   LOCKED`` and a conditional update to ``sending`` with a lease), sends it outside any
   transaction, and records the outcome with a conditional update: sent, retried with
   exponential backoff, failed with the reason, deferred by quiet hours, or skipped when it no
   longer applies. A redelivered task finds nothing due; a worker that dies mid-send leaves a
   lease that expires, and the row is retried (the receiver can dedupe by its delivery id).
4. **Acknowledge.** ``acknowledge`` records who took an escalated clock in hand; pending level
   3 messages and their repeats are skipped, and boards show it.

Modules: ``rules`` (which rules watch which clocks), ``detect`` (steps 1–2, called in the
transaction that moves a clock), ``messages`` (what is said), ``deliver`` (step 3; Celery only
wraps ``deliver_due``, tests call it directly with ``now``), ``acks`` (step 4).
"""
