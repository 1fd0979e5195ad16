"""Blueprint registration: one blueprint per resource."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from ..webhooks.endpoint import bp as webhooks_bp
    from .health import bp as health_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(webhooks_bp)
