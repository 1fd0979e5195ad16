"""The worker runtime: above everything, imported by nothing but the CLI, the app factory and tests.

``queues``: the three queues (Stripe events, outbox tasks, jobs) with one claim, backoff and hand-back
policy; ``loop``: a worker's rounds over them, its threads and housekeeping; ``supervisor``: ``worker
--processes N``, a parent that keeps N worker processes running; ``registries``: fills the registries of
webhook handlers, job kinds and outbox runners at app creation.
"""
