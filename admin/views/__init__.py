"""Blueprint registration: one blueprint per resource."""

from datetime import timedelta

from flask import Flask
from werkzeug.routing import BaseConverter, ValidationError

from admin.dbutil import parse_id


class IdConverter(BaseConverter):
    """``<id:name>`` in a route: a database id (ASCII digits, 1 to ``dbutil.MAX_ID``), else 404 before the
    view runs. Werkzeug's ``int`` takes any size (``/contributions/3000000000`` was "out of range" on
    PostgreSQL, 99999999999999999999 an OverflowError on SQLite) and any script's digits."""

    regex = r"[0-9]+"
    weight = 50  # as specific as werkzeug's number converters

    def to_python(self, value: str) -> int:
        pk = parse_id(value)
        if pk is None:
            raise ValidationError()
        return pk

    def to_url(self, value) -> str:
        return str(int(value))


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter  # before any blueprint's rules reach the map
    from admin.api import init_app as init_api
    from admin.security import init_security
    from admin.views.account import init_app as init_account
    from admin.views.audit import bp as audit_bp
    from admin.views.auth import bp as auth_bp
    from admin.views.connect import bp as connect_bp
    from admin.views.contact_money import bp as contact_money_bp
    from admin.views.contacts import bp as contacts_bp
    from admin.views.contributions import bp as contributions_bp
    from admin.views.customers import bp as customers_bp
    from admin.views.dashboard import bp as dashboard_bp
    from admin.views.donate import init_app as init_donate
    from admin.views.errors import bp as errors_bp
    from admin.views.events import bp as events_bp
    from admin.views.forms import bp as forms_bp
    from admin.views.health import bp as health_bp
    from admin.views.intents import bp as intents_bp
    from admin.views.jobs import bp as jobs_bp
    from admin.views.notifications import bp as notifications_bp
    from admin.views.payments import bp as payments_bp
    from admin.views.processors import bp as processors_bp
    from admin.views.reconcile import bp as reconcile_bp
    from admin.views.settings import bp as settings_bp
    from admin.views.subscriptions import bp as subscriptions_bp
    from admin.views.transfers import bp as transfers_bp
    from admin.views.users import bp as users_bp
    from admin.views.webhook_endpoints import bp as webhook_endpoints_bp
    from admin.webhooks.endpoint import bp as webhooks_bp

    init_security(app)
    app.register_blueprint(errors_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(auth_bp)
    init_account(app)
    app.register_blueprint(users_bp)
    app.register_blueprint(dashboard_bp)
    app.register_blueprint(events_bp)
    app.register_blueprint(intents_bp)
    app.register_blueprint(jobs_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(reconcile_bp)
    app.register_blueprint(forms_bp)
    app.register_blueprint(processors_bp)
    app.register_blueprint(webhook_endpoints_bp)
    app.register_blueprint(connect_bp)
    app.register_blueprint(transfers_bp)
    init_donate(app)
    for bp in (
        subscriptions_bp,
        customers_bp,
        contacts_bp,
        contact_money_bp,
        contributions_bp,
        payments_bp,
        settings_bp,
        notifications_bp,
    ):
        app.register_blueprint(bp)
    init_api(app)
    app.context_processor(lambda: {"nav_items": nav_items, "card_testing_alarms": _card_testing_alarms})
    _template_filters(app)


def _card_testing_alarms() -> list:
    from admin.services.monitoring.alarms import banner_alarms

    return banner_alarms()


def _template_filters(app: Flask) -> None:
    from admin.listing import PAGE_SIZES
    from admin.money import format_money
    from admin.services.events.queries import count_label, dashboard_url
    from admin.services.intents.queries import release_date
    from admin.timeutil import format_age, from_unix

    app.add_template_filter(from_unix, "from_unix")
    app.add_template_filter(format_age, "age")
    app.add_template_filter(lambda seconds: format_age(timedelta(seconds=seconds)), "seconds_age")
    app.add_template_filter(dashboard_url, "dashboard_url")
    app.add_template_filter(plain_value, "plain")
    app.add_template_filter(release_date, "release_date")
    app.add_template_global(count_label, "count_label")
    # A global (not only a context variable) so that macros imported from _list.html can use it.
    app.add_template_global(format_money, "format_money")
    app.jinja_env.globals["page_sizes"] = PAGE_SIZES  # what add_template_global does, for a value


def plain_value(value) -> str:
    """A stored value (an audit entry's parameter) as people read it: a list as "a, b", a mapping as
    "key value; ...", nothing as "—", never Python's repr."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return "; ".join(f"{k} {plain_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(plain_value(v) for v in value)
    return str(value)


# Main navigation: (label, endpoint[, role needed to see it]). Pages that later issues add appear as links once
# their endpoint exists; until then they are shown greyed out, not linked.
NAV_ITEMS = (
    ("Dashboard", "dashboard.index"),
    ("Events", "events.index"),
    ("Subscriptions", "subscriptions.index"),
    ("Payment intents", "intents.index"),
    ("Customers", "customers.index"),
    ("Contributions", "contributions.index"),
    ("Payments", "payments.index"),
    ("Reconcile", "reconcile.index"),
    ("Jobs", "jobs.index"),
    ("Forms", "forms.index"),
    ("Audit", "audit.index"),
    ("Connect", "connect.index"),
    ("Staff", "users.index", "admin"),
    ("Settings", "processors.index", "admin"),
)


def nav_items() -> list[dict]:
    from flask import request
    from flask_login import current_user

    from admin.security import endpoint_url

    items = []
    for label, endpoint, *role in NAV_ITEMS:
        if role and not current_user.can(role[0]):
            continue  # a page this person cannot open is not offered
        blueprint = endpoint.partition(".")[0]
        here = request.blueprint or ""
        current = {
            "contacts": "customers",
            "webhook_endpoints": "processors",
            "settings": "processors",
            "transfers": "connect",
        }.get(here, here)
        items.append({"label": label, "url": endpoint_url(endpoint), "active": current == blueprint})
    return items
