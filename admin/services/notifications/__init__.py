"""Outgoing notifications: signed JSON posted to the URLs admins register (``/settings/notifications``).

``endpoints`` registers, rotates and removes URLs; ``signing`` is the signature scheme (Stripe's, with a
``Paydesk-Signature`` header); ``changes`` notices the record changes that notify, in the transaction that
makes them; ``delivery`` sends through the outbox and keeps each URL's history.
"""
