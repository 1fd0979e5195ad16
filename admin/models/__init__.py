"""All tables. Money is integer minor units plus an ISO currency code.

Datetimes are naive UTC (see ``admin.timeutil``). One module per area; everything is
re-exported here, so ``from admin.models import X`` works for every table and constant.
"""

from admin.models.alarms import CardTestingEpisode  # noqa: F401
from admin.models.api import (  # noqa: F401
    NOTIFICATION_TYPES,
    TOKEN_SCOPES,
    TRIGGER_TOPICS,
    ApiIdempotencyKey,
    ApiToken,
    NotificationDelivery,
    NotificationEndpoint,
    Product,
    TriggerFeed,
)
from admin.models.base import (  # noqa: F401
    CANCELLED,
    COMPLETED,
    CONTRIBUTION_STATUSES,
    EV_ERROR,
    EV_IGNORED,
    EV_LOGGED,
    EV_PROCESSING,
    EV_QUEUED,
    EV_SUCCESS,
    EVENT_STATUSES,
    FAILED,
    PARTIALLY_REFUNDED,
    PENDING,
    RECUR_CANCELLED,
    RECUR_COMPLETED,
    RECUR_FAILING,
    RECUR_IN_PROGRESS,
    RECUR_PENDING,
    REFUNDED,
    ROLES,
    Money,
)
from admin.models.checks import SubscriptionCheck  # noqa: F401
from admin.models.donations import (  # noqa: F401
    FREQUENCIES,
    FREQUENCY_LABELS,
    REFUSAL_REASONS,
    DonationForm,
    DonationPlan,
    DonationRefusal,
    DonorLink,
    SpentFormToken,
)
from admin.models.jobs import Confirmation, EventAttempt, Job  # noqa: F401
from admin.models.limiter import LimiterCounter  # noqa: F401
from admin.models.pipeline import (  # noqa: F401
    CardTestingSignal,
    OutboxTask,
    StripeEvent,
    WebhookRejection,
    WorkerHeartbeat,
)
from admin.models.processors import PaymentProcessor  # noqa: F401
from admin.models.reconcile import ReconcileScan, UnmatchedPayment  # noqa: F401
from admin.models.records import (  # noqa: F401
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    StripeCustomer,
    StripePaymentIntent,
)
from admin.models.staff import AuditLog, RateLimit, RecoveryCode, StaffSession, User  # noqa: F401
