"""Paydesk settings: one module, read from the environment (django-environ).

With no environment at all it runs embedded: SQLite file, DEBUG on, Celery eager,
mock provider, fixed dev secrets that `check --deploy` flags. Each real part switches
on when its variable is set; the mock provider is off with DEBUG off unless
MOCK_PROVIDER_ENABLED. With DEBUG off, SECRET_KEY and JWT_SECRET are required (and
WEBHOOK_URLS_SECRET once WEBHOOK_URLS is set). The replaced services' names for some
settings are read too (_aliased): both names set to different values stops start-up.
See .env.example for every variable.
"""

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _aliased(name: str, alias: str, *, normalize=str.strip) -> str:
    """The value of Paydesk's `name`, or of `alias` (what a service Paydesk replaces called
    the same setting) when only that one is set; "" when neither is. Both set to values
    that differ (compared once normalized) stops start-up naming both: which one should
    win would be a guess. Set but empty counts as not set."""
    ours, theirs = (env.str(n, default="").strip() for n in (name, alias))
    if ours and theirs and normalize(ours) != normalize(theirs):
        raise ImproperlyConfigured(
            f"{name} and {alias} are both set, to different values ({alias} is the name a service "
            f"Paydesk replaces used for {name}): set only one of them."
        )
    return ours or theirs


DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    # Fixed and flagged: "django-insecure" makes `check --deploy` complain if it leaks.
    SECRET_KEY = env("SECRET_KEY", default="django-insecure-paydesk-dev-only-secret-key-change-me")
    JWT_SECRET = env("JWT_SECRET", default="insecure-dev-jwt-secret-change-me")
else:
    # env() without a default raises ImproperlyConfigured naming the variable.
    SECRET_KEY = env("SECRET_KEY")
    JWT_SECRET = env("JWT_SECRET")
# NextAuth's own session tokens (API.md "NextAuth session tokens"): accepted when the
# NextAuth app's secret is set; their users are customers of NEXTAUTH_MERCHANT (name or
# id; needed only when there is more than one merchant).
NEXTAUTH_SECRET = env.str("NEXTAUTH_SECRET", default="")
NEXTAUTH_MERCHANT = env.str("NEXTAUTH_MERCHANT", default="").strip()

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "config.apps.PaydeskAdminConfig",  # django.contrib.admin with Paydesk's site (config/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's assets, so /api/docs/ needs no CDN
    "django_celery_beat",
    "djstripe",
    "config.apps.PaydeskConfig",
    "webhooks",
    "payments",
    "wallets",
    "installments",
    "credits",
    "auctions",
    "backoffice",  # the operator dashboard: reads every app above, so it comes last
]

MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.ApiErrorShapeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # admin/browsable-API assets under gunicorn too
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.LazyMessageMiddleware",  # django.contrib.messages', storage built on first use
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services are atomic themselves (STYLE.md §7)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default writes from several processes (web server, worker, beat). WAL
    # lets readers and a writer run at once; IMMEDIATE takes the write lock when a
    # transaction begins, so a writer waits its turn (timeout, seconds) instead of failing
    # with "database is locked" when two transactions that read first both try to write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    # Persistent connections pay off under gunicorn. The development server starts a thread
    # per request, so with DEBUG on each thread's connection would linger idle instead
    # (a burst of requests ran PostgreSQL out of connections): none by default there.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if DEBUG else 60)
    # psycopg 3 with server-side parameters: statements go out as parse-once templates with
    # their values apart, and one a connection has run `prepare_threshold` times is prepared,
    # so PostgreSQL plans it once per connection instead of on every call. On the hot
    # paths planning cost several times the execution (the ledger's write: 0.32 ms to plan,
    # 0.07 ms to run); server-side, a debit's PostgreSQL CPU fell from 2.8 to 1.7 ms.
    # DATABASE_SERVER_SIDE_BINDING=false goes back to client-side interpolation (for a
    # transaction-mode pooler such as PgBouncer before 1.21, which cannot keep prepared
    # statements).
    if env.bool("DATABASE_SERVER_SIDE_BINDING", default=True):
        DATABASES["default"].setdefault("OPTIONS", {}).update({"server_side_binding": True, "prepare_threshold": 5})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
# Seconds the Redis cache may take to connect or to answer. Redis answers in well under a
# millisecond; one that is down or hung must fail fast (the throttles then count in memory,
# config.api.throttling) rather than hold the request (redis-py's own default: 5 s).
CACHE_SOCKET_TIMEOUT = env.float("CACHE_SOCKET_TIMEOUT", default=0.5)
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": CACHE_SOCKET_TIMEOUT, "socket_timeout": CACHE_SOCKET_TIMEOUT},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "paydesk"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Dates as 2026-03-01 14:05:09 (config/formats/en): unambiguous, sortable, short in a list.
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG  # in DEBUG, serve straight from the apps: no collectstatic needed
# Files Paydesk writes (large admin CSV exports) go through Django's storage API: a local
# folder by default; S3-compatible object storage when FILE_STORAGE_BUCKET is set (needs
# `pip install "django-storages[s3]"`; credentials from the usual AWS_* variables).
FILE_STORAGE_DIR = Path(env("FILE_STORAGE_DIR", default=str(BASE_DIR / "var" / "files")))
FILE_STORAGE_BUCKET = env("FILE_STORAGE_BUCKET", default="")
if FILE_STORAGE_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": FILE_STORAGE_BUCKET,
            "endpoint_url": env("FILE_STORAGE_ENDPOINT_URL", default="") or None,
            "region_name": env("FILE_STORAGE_REGION", default="") or None,
            "location": env("FILE_STORAGE_PREFIX", default="paydesk"),
            "default_acl": None,  # private objects, fetched through signed URLs
            "querystring_auth": True,
            "querystring_expire": 3600,
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": FILE_STORAGE_DIR},
    }
# Admin CSV exports of up to this many rows stream straight to the browser; larger ones
# are written to the storage above by a task and offered as a download link.
CSV_EXPORT_STREAM_MAX_ROWS = env.int("CSV_EXPORT_STREAM_MAX_ROWS", default=50_000)
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production) -------------------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    # Health checks come from load balancers over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^health$"]


# --- CORS ----------------------------------------------------------------------------
def _origins(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        try:
            origins = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"CORS_ORIGINS / ALLOWED_ORIGINS: not a JSON array of origins: {exc}")
        return [str(o) for o in origins]
    return [o.strip() for o in raw.split(",") if o.strip()]


# ALLOWED_ORIGINS: the credits backend's name for it (a JSON array). The same origins in
# another order or syntax are the same setting.
CORS_ALLOWED_ORIGINS = _origins(
    _aliased("CORS_ORIGINS", "ALLOWED_ORIGINS", normalize=lambda raw: frozenset(_origins(raw)))
)
CORS_ALLOW_ALL_ORIGINS = DEBUG and not CORS_ALLOWED_ORIGINS
CORS_EXPOSE_HEADERS = ["X-Request-Id", "Idempotent-Replayed", "Retry-After"]
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-request-id",
    "x-csrftoken",
]

# --- API ---------------------------------------------------------------------------
API_THROTTLE_RATE = env("API_THROTTLE_RATE", default="1000/min")
# Seconds a web process remembers an API key that authenticated (payments.identity.key_cache),
# so a merchant's request costs no query to authenticate. A key revoked or a merchant
# suspended in another process is still accepted here for at most this long. 0: no cache.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)
AUTH_FAILURE_THROTTLE_RATE = env("AUTH_FAILURE_THROTTLE_RATE", default="30/min")
# Trusted proxies in front of the app. 0: the client address is REMOTE_ADDR and a
# client-sent X-Forwarded-For is ignored (else anyone could dodge the throttles with it).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)
IDEMPOTENCY_KEY_TTL = timedelta(hours=24)
# A key still "in flight" after this long was left by a process that died mid-request:
# a retry with the same key and body runs again. Keep it above the longest request.
IDEMPOTENCY_IN_FLIGHT_LEASE = timedelta(seconds=env.int("IDEMPOTENCY_IN_FLIGHT_LEASE", default=120))
DEFAULT_PAYMENT_QUOTA = env.int("DEFAULT_PAYMENT_QUOTA", default=10_000)
JWT_ALGORITHM = "HS256"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "payments.identity.authentication.ApiKeyAuthentication",
        "payments.identity.authentication.NextAuthSessionAuthentication",  # five-part tokens (JWE) only
        "payments.identity.authentication.CustomerJWTAuthentication",
        "payments.identity.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["payments.identity.permissions.IsMerchantOrStaff"],
    "DEFAULT_THROTTLE_CLASSES": ["config.api.throttling.CallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": API_THROTTLE_RATE, "auth_failure": AUTH_FAILURE_THROTTLE_RATE},
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_PAGINATION_CLASS": "config.api.pagination.LimitPagePagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.errors.exception_handler",
    # JSON without NUL characters (PostgreSQL cannot store them); form and multipart for
    # the browsable API's forms.
    "DEFAULT_PARSER_CLASSES": [
        "config.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # The browsable API only for logged-in staff; JSON for every other caller.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.api.negotiation.StaffBrowsableContentNegotiation",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "config.api.renderers.BrowsableAPIRenderer",  # forms built from what each endpoint takes
    ],
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Paydesk API",
    "DESCRIPTION": "Payments back office: payments, wallets, charges, installments, credits, webhooks. "
    'Amounts are integers in minor units. Errors: {"error": {type, code, message, param}}.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Charges and refunds share one set of statuses: name it once instead of "Status469Enum".
    "ENUM_NAME_OVERRIDES": {
        "AttemptStatusEnum": "payments.models.Charge.Status",
        "AuctionStatusEnum": "auctions.models.Auction.Status",
        "BidStatusEnum": "auctions.models.Bid.Status",
    },
    # Swagger UI from our own static files, not a CDN: the docs work offline and behind
    # a strict Content-Security-Policy.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery ----------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
# No broker configured: tasks run in-process so the embedded default needs nothing.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # money work must survive a worker crash: redeliver, never drop
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=240)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds the broker may take to connect (and a Redis broker to answer). A request sends
# its outbox row's task after commit: without a bound (kombu's Redis default), a broker
# that hangs (a paused or half-dead Redis) holds that request for ever; with one, the
# send fails, is logged, and the periodic sweep sends the row (webhooks.services.enqueue).
BROKER_SOCKET_TIMEOUT = env.float("BROKER_SOCKET_TIMEOUT", default=2.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_SOCKET_TIMEOUT
if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": BROKER_SOCKET_TIMEOUT,
        "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
    }
# `filesystem://` is kombu's file-system transport: messages are files in one folder, so
# a worker and beat run with no broker server. `make run` uses it when no broker is
# configured (one machine, one worker: a message is claimed by moving its file).
CELERY_FILESYSTEM_BROKER_DIR = Path(env("CELERY_FILESYSTEM_BROKER_DIR", default=str(BASE_DIR / ".run" / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FILESYSTEM_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_FILESYSTEM_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_FILESYSTEM_BROKER_DIR / "control"),
    }
    # kombu needs the folders to exist; whoever sends first (web, worker or beat) makes them.
    for _folder in ("queue", "control"):
        (CELERY_FILESYSTEM_BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat writes each task's last_run_at to the database after every send, not every 3
# minutes (Celery's default): /healthz and the dashboard judge beat by that column, and a
# 1-minute task would otherwise look two runs late between syncs.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = TIME_ZONE

# --- Stripe and providers -------------------------------------------------------------------
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="")
STRIPE_LIVE_MODE = STRIPE_SECRET_KEY.startswith("sk_live_")
if STRIPE_SECRET_KEY:
    if STRIPE_LIVE_MODE:
        STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY
    else:
        STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY
if STRIPE_API_BASE:
    STRIPE_API_HOST = STRIPE_API_BASE  # dj-stripe's name for the same thing
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"
# The mock provider's checkout page lets anyone who opens it mark a payment paid (or buy
# credits): on in development only, unless switched on on purpose (check --deploy warns).
MOCK_PROVIDER_ENABLED = env.bool("MOCK_PROVIDER_ENABLED", default=DEBUG)
MOCK_WEBHOOK_SECRET = env("MOCK_WEBHOOK_SECRET", default="mock_whsec_insecure_dev_secret" if DEBUG else "")
# Never silently the mock in production: with neither Stripe nor the mock, a payment that
# names no provider is refused (400, param `provider`).
# PAYMENT_PROVIDER: the replaced services' name for the same setting.
DEFAULT_PAYMENT_PROVIDER = _aliased("DEFAULT_PAYMENT_PROVIDER", "PAYMENT_PROVIDER") or (
    "stripe" if STRIPE_SECRET_KEY else ("mock" if MOCK_PROVIDER_ENABLED else "")
)
WEBHOOK_TOLERANCE_SECONDS = 300

# --- Logging -----------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logging.RequestIdFilter"},
        "redact": {"()": "config.logging.RedactSecretsFilter"},
    },
    "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        "celery.app.trace": {"level": "WARNING"},  # one INFO line per task is noise at volume
    },
}

# --- Webhooks ----------------------------------------------------------------------------
# The merchant model, named (like AUTH_USER_MODEL) so the webhooks layer need not import it.
PAYDESK_MERCHANT_MODEL = "payments.Merchant"
WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
WEBHOOK_DELIVERY_TIMEOUT = env.float("WEBHOOK_DELIVERY_TIMEOUT", default=10.0)
# Seconds before attempt 2, 3, ...: about three days in all, then the delivery is failed.
WEBHOOK_RETRY_SCHEDULE = env.list(
    "WEBHOOK_RETRY_SCHEDULE", cast=int, default=[60, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000]
)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=50)
# Seconds before each retry of an inbound event whose handler failed (by its task, or the
# sweep if that message was lost); when used up the event stays `failed` for staff.
WEBHOOK_INBOUND_RETRY_SCHEDULE = env.list(
    "WEBHOOK_INBOUND_RETRY_SCHEDULE", cast=int, default=[30, 120, 600, 1800, 7200, 21600]
)
# SSRF guard: endpoint URLs on loopback/private/link-local addresses are refused unless allowed.
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=DEBUG)
# Operator endpoints (the installments API's WEBHOOK_URLS, comma-separated) that get every
# merchant's events, signed with WEBHOOK_URLS_SECRET: required with DEBUG off once
# WEBHOOK_URLS is set. They are the operator's own configuration, not a merchant's input,
# so the SSRF guard does not apply to them (webhooks.services.delivery_send).
WEBHOOK_URLS = list(dict.fromkeys(u.strip() for u in env.str("WEBHOOK_URLS", default="").split(",") if u.strip()))
for _url in WEBHOOK_URLS:
    if urlsplit(_url).scheme not in ("http", "https") or not urlsplit(_url).hostname or len(_url) > 2000:
        raise ImproperlyConfigured(f"WEBHOOK_URLS: {_url!r} is not an http:// or https:// URL with a host.")
if WEBHOOK_URLS and not DEBUG:
    WEBHOOK_URLS_SECRET = env("WEBHOOK_URLS_SECRET")
else:
    WEBHOOK_URLS_SECRET = env("WEBHOOK_URLS_SECRET", default="whsec_insecure_dev_webhook_urls_secret" if DEBUG else "")

# --- Payments ------------------------------------------------------------------------------
# Where Paydesk is reachable from payers' browsers and providers (mock checkout links,
# notify URLs). Default: the dev server.
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
HTTP_PROVIDER_URL = env("HTTP_PROVIDER_URL", default="")
HTTP_PROVIDER_API_KEY = env("HTTP_PROVIDER_API_KEY", default="")
HTTP_PROVIDER_TIMEOUT = env.float("HTTP_PROVIDER_TIMEOUT", default=10.0)
HTTP_WEBHOOK_SECRET = env("HTTP_WEBHOOK_SECRET", default="")
# Nepal's wallets (payments/providers/esewa.py, khalti.py), for NPR. Their defaults are
# the providers' test endpoints. eSewa's test product code and secret are public (on its
# developer site), so the secret defaults to it only while DEBUG is on: with DEBUG off
# eSewa is off until ESEWA_SECRET_KEY is set, and Khalti until KHALTI_SECRET_KEY is
# (Khalti has no public test key: each merchant gets one from test-admin.khalti.com).
ESEWA_PRODUCT_CODE = env("ESEWA_PRODUCT_CODE", default="EPAYTEST")
ESEWA_SECRET_KEY = env("ESEWA_SECRET_KEY", default="8gBm/:&EnhH.1/q" if DEBUG else "")
ESEWA_BASE_URL = env("ESEWA_BASE_URL", default="https://rc-epay.esewa.com.np")
KHALTI_SECRET_KEY = env("KHALTI_SECRET_KEY", default="")
KHALTI_BASE_URL = env("KHALTI_BASE_URL", default="https://dev.khalti.com/api/v2/")
# Reconciliation: pending payments older than this are asked about at their provider;
# still pending after PAYMENT_EXPIRE_AFTER_SECONDS, they expire.
PAYMENT_RECONCILE_AFTER_SECONDS = env.int("PAYMENT_RECONCILE_AFTER_SECONDS", default=900)
PAYMENT_EXPIRE_AFTER_SECONDS = env.int("PAYMENT_EXPIRE_AFTER_SECONDS", default=86400)
# A charge whose card part the provider never confirms is failed (its wallet hold
# released, staff alerted) after this long; below Stripe's 24 h idempotency-key memory.
CHARGE_PENDING_DEADLINE = env.int("CHARGE_PENDING_DEADLINE", default=82800)

# --- Installments -----------------------------------------------------------------------
# Seconds after a failed collection before each retry; after the last one the installment
# (and its order) is defaulted. Default: +1 day, +3 days, +7 days.
INSTALLMENT_DUNNING_SCHEDULE = env.list("INSTALLMENT_DUNNING_SCHEDULE", cast=int, default=[86400, 259200, 604800])
# Installments claimed per chunk. The wallet-covered ones are charged set-based, one
# transaction per balance shard, so a chunk of 1,600 gives each shard's transaction about
# 200 rows (README, Benchmarks); the rest go one by one, and whatever of them is left when
# half the claim's lease has passed is released to the next claim.
INSTALLMENT_COLLECT_CHUNK = env.int("INSTALLMENT_COLLECT_CHUNK", default=1600)

# Each merchant's balance in a currency is this many ledger accounts (wallets.ledger): a
# customer's money lands on the shard of its id, so one merchant's debits from many
# wallets do not queue on one row. Raise it, never lower it (a lowered count would hide
# the money of the shards beyond it from merchant_balance); raising it moves customers to
# new shards, which is harmless: a charge settles on its hold's shard, refunds draw on
# all of them, and a retried keyed transfer matches its first whatever shard that used.
MERCHANT_BALANCE_SHARDS = env.int("MERCHANT_BALANCE_SHARDS", default=8)
# Collect a chunk's wallet-covered installments set-based, in one transaction (a few
# statements per chunk); off: every installment one by one through charge_create.
INSTALLMENT_COLLECT_SET_BASED = env.bool("INSTALLMENT_COLLECT_SET_BASED", default=True)
# The beat task collects chunk after chunk for this long at most, then the next run
# resumes: below CELERY_TASK_SOFT_TIME_LIMIT so a run ends between chunks, never in one.
INSTALLMENT_COLLECT_BUDGET_SECONDS = env.int("INSTALLMENT_COLLECT_BUDGET_SECONDS", default=200)
