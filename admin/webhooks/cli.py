"""CLI for the webhook pipeline: the worker and the read-only listings."""

from flask import Flask


def register(app: Flask) -> None:
    pass
