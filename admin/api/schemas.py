"""What the API reads and answers: pydantic models, the one source of validation and of the OpenAPI
document. Field names and meanings follow the automation connector (Product_Response, Customer_Response,
OnNew*ResponseItem) plus paydesk's own ids."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, StringConstraints

from admin.money import CURRENCIES
from admin.services.payments import charges, common

from .spec import Strict

# paydesk keeps naive UTC times; the API says so (RFC 3339 with "Z"), as OpenAPI's date-time requires.
UtcDateTime = Annotated[datetime, AfterValidator(lambda d: d if d.tzinfo else d.replace(tzinfo=UTC))]

ID = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_\-]+$")


# -- products -----------------------------------------------------------------------------------


class ProductBody(Strict):
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The product's name, meant to be displayable to the customer.",
    )
    active: bool | None = Field(default=None, description="Whether the product is available for purchase.")
    caption: str | None = Field(default=None, max_length=255, description="A short one-line description.")
    description: str | None = Field(default=None, max_length=5000, description="The product's description.")
    images: list[HttpUrl] | None = Field(default=None, max_length=8, description="Up to 8 URLs of images.")
    shippable: bool | None = Field(
        default=None, description="Whether this product is shipped (physical goods)."
    )
    url: HttpUrl | None = Field(default=None, description="A publicly-accessible webpage for this product.")


class CreateProductBody(ProductBody):
    name: str = Field(min_length=1, max_length=255, description="The product's name.")
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9_\-]+$",
        description="The identifier for the product; Stripe makes one when left out.",
    )


class UpdateProductBody(ProductBody):
    pass


class ProductOut(BaseModel):
    id: str = Field(description="The Stripe id of the product.")
    paydesk_id: int | None = Field(description="paydesk's record of the product.")
    processor_id: int
    name: str
    active: bool
    caption: str | None = None
    description: str | None = None
    images: list[str] = []
    shippable: bool | None = None
    url: str | None = None
    created: UtcDateTime | None = None
    updated: UtcDateTime | None = None


class ProductList(BaseModel):
    data: list[ProductOut]
    has_more: bool
    next_cursor: str | None


# -- customers ----------------------------------------------------------------------------------


class CreateCustomerBody(Strict):
    name: str | None = Field(default=None, max_length=255, description="The contact's name.")
    email: str | None = Field(default=None, max_length=255, description="The customer's email address.")
    description: str | None = Field(default=None, max_length=350, description="An arbitrary description.")
    contact_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="An existing paydesk contact to make the customer for."
    )


class UpdateCustomerBody(Strict):
    name: str | None = Field(default=None, max_length=255, description="The contact's name.")
    email: str | None = Field(
        default=None, max_length=255, description="The customer's email address; empty unsets it."
    )
    description: str | None = Field(default=None, max_length=350, description="Empty unsets it.")


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    display_name: str | None
    email: str | None


class CustomerOut(BaseModel):
    id: str = Field(description="The id of the customer.")
    account_balance: int | None = Field(
        description="Current balance on the customer's account (minor units)."
    )
    created: UtcDateTime | None
    currency: str | None
    delinquent: bool | None
    description: str | None
    discount: str | None
    email: str | None
    processor_id: int
    contact_id: int | None = Field(description="The paydesk contact linked to this customer.")
    contact: ContactOut | None
    metadata: dict[str, str] = {}


# -- read-only lists ----------------------------------------------------------------------------


class Paged(BaseModel):
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page (older items).")


class ContributionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    contact_id: int | None
    processor_id: int
    recur_id: int | None
    amount: int = Field(description="Minor units of the currency.")
    currency: str
    status: str
    trxn_id: str | None
    invoice_id: str | None
    payment_intent_id: str | None
    customer_id: str | None
    receive_date: UtcDateTime | None
    description: str | None
    source: str | None
    fee_amount: int | None
    net_amount: int | None
    refunded_amount: int | None
    failure_message: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime | None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    contribution_id: int
    processor_id: int
    trxn_id: str
    charge_id: str | None
    refund_id: str | None
    amount: int
    fee: int | None
    net: int | None
    currency: str
    status: str
    payment_date: UtcDateTime | None
    created_at: UtcDateTime


class SubscriptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    contact_id: int | None
    processor_id: int
    subscription_id: str
    customer_id: str | None
    amount: int
    currency: str
    interval: str
    interval_count: int
    status: str
    stripe_status: str | None
    start_date: UtcDateTime | None
    next_sched_date: UtcDateTime | None
    cancel_date: UtcDateTime | None
    failure_count: int | None
    created_at: UtcDateTime


class IntentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    stripe_intent_id: str
    contribution_id: int | None
    processor_id: int
    contact_id: int | None
    customer_id: str | None
    description: str | None
    status: str | None
    amount: int | None
    currency: str | None
    capture_method: str | None
    created_date: UtcDateTime
    last_error: str | None


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    processor_id: int
    event_id: str
    type: str
    created: int = Field(description="Stripe's unix time.")
    livemode: bool
    object_id: str | None
    customer_id: str | None
    subscription_id: str | None
    invoice_id: str | None
    charge_id: str | None
    payment_intent_id: str | None
    source: str
    status: str
    status_reason: str | None
    attempts: int | None
    last_error: str | None
    received_at: UtcDateTime
    processed_at: UtcDateTime | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    title: str
    params: dict[str, Any] | None
    processor_id: int | None
    actor: str
    status: str
    done: int | None
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: UtcDateTime
    actor: str
    action: str
    object_type: str | None
    object_id: str | None
    processor_id: int | None
    parameters: dict[str, Any] | None
    result: str
    message: str | None
    stripe_request_id: str | None


class ContributionList(Paged):
    data: list[ContributionOut]


class PaymentList(Paged):
    data: list[PaymentOut]


class SubscriptionList(Paged):
    data: list[SubscriptionOut]


class IntentList(Paged):
    data: list[IntentOut]


class EventList(Paged):
    data: list[EventOut]


class JobList(Paged):
    data: list[JobOut]


class AuditList(Paged):
    data: list[AuditOut]


# -- polling triggers ---------------------------------------------------------------------------


class TriggerQuery(Strict):
    after: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[0-9]{1,18}$",
        description="The next_cursor of the previous answer; left out: from the oldest item kept. Items are "
        "kept 30 days (PAYDESK_RETENTION_TRIGGER_FEED): a cursor older than that goes on from the oldest item "
        "kept, and what was deleted in between is not sent.",
    )
    limit: int = Field(default=100, ge=1, le=100)


class Outcome(BaseModel):
    network_status: str | None = None
    reason: str | None = None
    risk_level: str | None = None
    seller_message: str | None = None
    type: str | None = None


class NewCustomerItem(BaseModel):
    id: str
    account_balance: int | None = None
    created: UtcDateTime | None
    currency: str | None = None
    delinquent: bool | None = None
    description: str | None = None
    discount: str | None = None
    email: str | None
    processor_id: int | None
    contact_id: int | None
    name: str | None


class NewChargeItem(BaseModel):
    id: str
    amount: int
    amount_refunded: int
    captured: bool
    created: UtcDateTime | None
    currency: str
    customer: str | None
    description: str | None
    failure_code: str | None = None
    failure_message: str | None
    invoice: str | None
    order: str | None = None
    outcome: Outcome | None = None
    paid: bool
    receipt_email: str | None
    receipt_number: str | None = None
    refunded: bool
    statement_descriptor: str | None = None
    status: str
    processor_id: int | None
    payment_id: int
    contribution_id: int
    contact_id: int | None


class NewOrderItem(BaseModel):
    id: str
    amount: int
    amount_returned: int
    charge: str | None
    created: UtcDateTime | None
    currency: str
    customer: str | None
    email: str | None
    selected_shipping_method: str | None = None
    status: str
    updated: UtcDateTime | None
    processor_id: int | None
    contribution_id: int
    contact_id: int | None


class NewInvoiceItem(BaseModel):
    id: str
    amount: int
    currency: str
    customer: str | None
    date: UtcDateTime | None
    description: str | None
    discountable: bool = False
    invoice: str | None
    plan: str | None = None
    proration: bool = False
    quantity: str | None = None
    subscription: str | None
    processor_id: int | None
    contribution_id: int
    recur_id: int | None
    contact_id: int | None


class TriggerPage(BaseModel):
    has_more: bool
    next_cursor: str | None = Field(description="Pass back as `after`; unchanged when nothing is new.")


class NewCustomers(TriggerPage):
    data: list[NewCustomerItem]


class NewCharges(TriggerPage):
    data: list[NewChargeItem]


class NewOrders(TriggerPage):
    data: list[NewOrderItem]


class NewInvoiceItems(TriggerPage):
    data: list[NewInvoiceItem]


# -- payment operations (charge a saved customer, capture, refund) -----------------------------

# Stripe's largest charge in any currency (twelve digits of IDR); each currency's own is checked by the service
AMOUNT_MAX = max(c.max_amount for c in CURRENCIES.values())
MetadataKey = Annotated[
    str, StringConstraints(min_length=1, max_length=common.METADATA_KEY_MAX, pattern=r"^[^\[\]]+$")
]
MetadataValue = Annotated[str, StringConstraints(max_length=common.METADATA_VALUE_MAX)]
RefundReason = Literal["duplicate", "fraudulent", "requested_by_customer"]  # refunds.REASONS


def _amount(description: str) -> Any:
    return Field(default=None, ge=1, le=AMOUNT_MAX, description=description)


class ChargeBody(Strict):
    contact_id: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The paydesk contact to charge (or give customer_id)."
    )
    customer_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^cus_[A-Za-z0-9_]+$",
        description="Which of the contact's Stripe customers to charge (needed when it has several); "
        "alone, the contact linked to this customer is charged.",
    )
    amount: int = Field(ge=1, le=AMOUNT_MAX, description="Minor units of the currency: 2500 is 25.00 USD.")
    currency: str = Field(default="usd", pattern=r"^[a-z]{3}$", description="Three-letter ISO code.")
    description: str = Field(
        default="",
        max_length=charges.DESCRIPTION_MAX,
        description="Shown in Stripe with the contact and contribution ids paydesk adds.",
    )
    statement_descriptor_suffix: str | None = Field(
        default=None,
        max_length=charges.SUFFIX_MAX,
        description="What the donor's statement shows after yours.",
    )
    capture: bool = Field(
        default=True, description="false: authorise only, and capture later with POST /api/v1/captures."
    )
    expires_after: int | None = Field(
        default=None,
        ge=1,
        le=charges.EXPIRY_MAX_HOURS,
        description="An authorisation only: hours after which paydesk cancels it if nobody captured it.",
    )
    application_fee: int | None = _amount(
        "Connect: what your platform keeps of a payment to the destination account (minor units)."
    )
    destination: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^acct_[A-Za-z0-9]+$",
        description="Connect: the connected account (acct_...) the payment is for.",
    )
    transfer_group: str | None = Field(default=None, max_length=255, description="Connect: a transfer group.")
    payment_method: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^(pm|card|src)_[A-Za-z0-9_]+$",
        description="Which saved card (pm_...); left out: the customer's default card.",
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=common.METADATA_MAX_KEYS - len(charges.RESERVED_METADATA),
        description="Stripe metadata; paydesk sets " + ", ".join(charges.RESERVED_METADATA) + " itself.",
    )


class CaptureBody(Strict):
    id: str = Field(
        min_length=4,
        max_length=255,
        pattern=r"^(pi|ch)_[A-Za-z0-9_]+$",
        description="The authorised PaymentIntent (pi_...) or charge (ch_...).",
    )
    amount: int | None = _amount(
        "Minor units to capture; left out: everything authorised (the rest is released)."
    )


class RefundBody(Strict):
    payment_id: int = Field(
        ge=1,
        le=2**31 - 1,
        description="The charge's payment in paydesk (payment_id of the new-charges trigger, id of /payments).",
    )
    amount: int | None = _amount("Minor units to refund; left out: everything left to refund.")
    reason: RefundReason | None = None
    refund_application_fee: bool = Field(
        default=False, description="Connect: give the application fee back too."
    )
    reverse_transfer: bool = Field(
        default=False, description="Connect: take the refund back from the destination account."
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=common.METADATA_MAX_KEYS,
        description="Stripe metadata of the refund.",
    )


class ChargeOut(BaseModel):
    status: str = Field(
        description="Stripe's status of the payment: succeeded, requires_capture (authorised only) or "
        "processing (its webhook completes the contribution)."
    )
    message: str
    payment_intent_id: str
    charge_id: str | None = Field(description="The charge, once the payment succeeded.")
    contribution: ContributionOut
    payment: PaymentOut | None = Field(description="The payment row, once the payment succeeded.")
    stripe_request_id: str | None


class CaptureOut(BaseModel):
    id: str = Field(description="What was captured: the PaymentIntent, or a charge made without one.")
    outcome: str = Field(description="captured, or already_succeeded (nothing was left to capture).")
    amount: int | None = Field(description="Minor units captured (already_succeeded: what the donor paid).")
    currency: str | None
    message: str
    charge_id: str | None
    contribution: ContributionOut | None
    payment: PaymentOut | None = Field(
        description="The payment row; after capturing an intent it is written when Stripe's webhook arrives."
    )
    stripe_request_id: str | None


class RefundOut(BaseModel):
    refund_id: str
    charge_id: str
    amount: int = Field(description="Minor units refunded.")
    currency: str
    recorded_now: bool = Field(description="false: Stripe's webhook had recorded the refund already.")
    message: str
    payment: PaymentOut = Field(description="The refund as a negative payment on the contribution.")
    contribution: ContributionOut
    stripe_request_id: str | None
