"""Blueprint registration: one blueprint per resource."""

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from ..security import init_security
    from ..webhooks.endpoint import bp as webhooks_bp
    from .auth import bp as auth_bp
    from .dashboard import bp as dashboard_bp
    from .donate import init_app as init_donate
    from .errors import bp as errors_bp
    from .forms import bp as forms_bp
    from .health import bp as health_bp

    init_security(app)
    app.register_blueprint(errors_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(forms_bp)
    init_donate(app)
    app.context_processor(lambda: {"nav_items": nav_items})


# Main navigation: (label, endpoint). Pages that later issues add appear as links once
# their endpoint exists; until then they are shown greyed out, not linked.
NAV_ITEMS = (
    ("Dashboard", "dashboard.index"),
    ("Events", "events.index"),
    ("Subscriptions", "subscriptions.index"),
    ("Payment intents", "intents.index"),
    ("Customers", "customers.index"),
    ("Contributions", "contributions.index"),
    ("Payments", "payments.index"),
    ("Forms", "forms.index"),
    ("Audit", "audit.index"),
)


def nav_items() -> list[dict]:
    from flask import request

    from ..security import endpoint_url

    items = []
    for label, endpoint in NAV_ITEMS:
        blueprint = endpoint.partition(".")[0]
        items.append({"label": label, "url": endpoint_url(endpoint), "active": request.blueprint == blueprint})
    return items
