"""WTForms forms. Every form carries a CSRF token (Flask-WTF)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length
from wtforms.widgets import CheckboxInput, ListWidget

from admin.models import FREQUENCY_LABELS, ROLES


class EmptyForm(FlaskForm):
    """Only the CSRF token: for button-only POSTs (sign out, retry, cancel, ...)."""

    submit = SubmitField("Submit")


class LoginForm(FlaskForm):
    # No format check beyond "required": accounts are created by the CLI, and the credential
    # check answers the same way for anything that is not a known address.
    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Sign in")


class CodeForm(FlaskForm):
    """The second sign-in step, and every two-factor change that asks for a current code."""

    code = StringField(
        "Code from your authenticator app, or a recovery code", validators=[DataRequired(), Length(max=32)]
    )
    submit = SubmitField("Continue")


class PasswordChangeForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])
    password = PasswordField(
        "New password (at least 10 characters)", validators=[DataRequired(), Length(max=1024)]
    )
    confirm = PasswordField("New password again", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("Change password")


class NewUserForm(FlaskForm):
    """Adding a staff account on the users page: the service checks both (as ``user create`` does)."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=255)])
    role = SelectField(
        "Role",
        choices=[
            SelectChoice("viewer", "viewer: reads everything"),
            SelectChoice("operator", "operator: also acts (retries, refunds, imports)"),
            SelectChoice("admin", "admin: also manages processors, forms and staff"),
        ],
    )
    submit = SubmitField("Add account")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=[SelectChoice(r, r) for r in ROLES])
    submit = SubmitField("Change role")


class DonationFormForm(FlaskForm):
    """An admin's settings for a donation form. It only carries them: the service
    (``services.donations.forms``) checks and normalises every one, and each refusal names its setting and
    says why ("Currency: ..."), as ``forms add`` does. No check here, so no message that names no field."""

    title = StringField("Title")
    slug = StringField("Slug (the page is /donate/<slug>)")
    intro = TextAreaField("Introduction")
    processor_id = SelectField("Payment processor", validate_choice=False)
    currency = StringField("Currency (a code Stripe charges in, such as usd, eur or gbp)", default="usd")
    amounts = StringField("Preset amounts (comma-separated, e.g. 10, 25, 50)")
    allow_other_amount = BooleanField("Donors may enter another amount", default=True)
    min_amount = StringField("Minimum amount", default="1")
    max_amount = StringField("Maximum amount (empty: Stripe's largest charge in the currency)")
    frequencies = SelectMultipleField(
        "Frequencies offered",
        validate_choice=False,
        choices=[SelectChoice(k, v) for k, v in FREQUENCY_LABELS.items()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    postcode_field = BooleanField("Billing address section with its own postcode field", default=True)
    thank_you_text = TextAreaField("Thank-you text")
    receipts = BooleanField("Send receipts", default=True)
    stripe_receipt = BooleanField(
        "Stripe sends the receipt (to the donor's email; paydesk then sends none)", default=False
    )
    active = BooleanField("Active (the page is open to donors)", default=True)
    submit = SubmitField("Save form")


class ProcessorForm(FlaskForm):
    """A payment processor as ``processor add|set`` takes it. Keys are typed once and never shown again (the
    page shows them masked); an empty key field on the edit page keeps the stored one. The service
    (``services.settings.processors``) checks every value."""

    name = StringField("Name")
    mode = SelectField(
        "Mode", choices=[SelectChoice("test", "Test"), SelectChoice("live", "Live")], validate_choice=False
    )
    secret_key = PasswordField("Secret key (sk_… or rk_…)")
    publishable_key = StringField("Publishable key (pk_…; donation forms need it)")
    webhook_secret = PasswordField("Add a webhook signing secret (whsec_…)")
    api_base = StringField("API base URL (empty for Stripe; e.g. http://127.0.0.1:8420 for localstripe)")
    default = BooleanField("Default processor")
    active = BooleanField("Active", default=True)
    submit = SubmitField("Save processor")
