"""Django settings for callvault, read from CALLVAULT_* environment variables only.

Safe embedded defaults for a laptop (SQLite and a generated key ring in the data folder);
outside debug the process refuses to start without a real secret key and key ring.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from callvault.lib.dburl import database_from_url
from callvault.lib.envconfig import (
    default_data_dir,
    env_bool,
    env_int,
    env_list,
    env_secret,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent
DEBUG = env_bool("CALLVAULT_DEBUG", False)
TESTING = env_bool("CALLVAULT_TESTING", False)

DATA_DIR = Path(env_str("CALLVAULT_DATA_DIR") or default_data_dir()).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)


def _secret_key() -> str:
    key = env_secret("CALLVAULT_SECRET_KEY")
    if key:
        if not DEBUG and len(key) < 50:
            raise ImproperlyConfigured("CALLVAULT_SECRET_KEY must be at least 50 random characters")
        return key
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "CALLVAULT_SECRET_KEY (or CALLVAULT_SECRET_KEY_FILE) is required outside debug"
        )
    # Debug only: a key generated once per data folder so sessions survive restarts.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("CALLVAULT_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CALLVAULT_CSRF_TRUSTED_ORIGINS")

# The vault's key ring: JSON in CALLVAULT_KEYRING, or a file (CALLVAULT_KEYRING_FILE,
# default <data>/keyring.json). Only debug and tests may generate one on first use.
VAULT_KEYRING = env_secret("CALLVAULT_KEYRING") if not env_str("CALLVAULT_KEYRING_FILE") else None
VAULT_KEYRING_FILE = Path(env_str("CALLVAULT_KEYRING_FILE") or DATA_DIR / "keyring.json")
VAULT_KEYRING_AUTOCREATE = DEBUG or TESTING

# Addresses (CIDR) of reverse proxies whose forwarding header is believed.
TRUSTED_PROXIES = env_list("CALLVAULT_TRUSTED_PROXIES")
# The one forwarding header those proxies set: "X-Forwarded-For" (default) or "Forwarded"
# (RFC 7239). Only this header is read; the proxy must overwrite it (and should drop the
# other one) so a client cannot name its own address.
FORWARDED_HEADER = env_str("CALLVAULT_FORWARDED_HEADER", "X-Forwarded-For")
if FORWARDED_HEADER.lower() not in ("x-forwarded-for", "forwarded"):
    raise ImproperlyConfigured("CALLVAULT_FORWARDED_HEADER must be X-Forwarded-For or Forwarded")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "ninja",  # serves the API docs page from its own static files, no CDN
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "callvault.accounts",
    "callvault.vault",
    "callvault.audit",
    "callvault.orders",
    "callvault.guard",
    "callvault.telephony",
    "callvault.monitoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "callvault.audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Who may stay, in this order: a revoked, expired or moved session ends first (the
    # request goes on as anonymous); then the actor is known; then the address, a support
    # grant's scope, the second factor and the password's age are each enforced.
    "callvault.accounts.sessions.SessionGuardMiddleware",
    "callvault.audit.middleware.AuthenticatedActorMiddleware",
    "callvault.accounts.allowlist.AllowListMiddleware",
    "callvault.accounts.support.SupportAccessMiddleware",
    "callvault.accounts.twofactor.SecondFactorMiddleware",
    "callvault.accounts.middleware.PasswordChangeRequiredMiddleware",
    # A member suspended by a quota breach reaches nothing until an owner reviews it.
    "callvault.guard.middleware.SuspensionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Counts failures and refuses locked-out logins before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "callvault.urls"
WSGI_APPLICATION = "callvault.wsgi.application"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "callvault.guard.watermark.watermark",
            ],
        },
    }
]

DATABASE_URL = env_str("CALLVAULT_DATABASE_URL") or f"sqlite:///{DATA_DIR / 'callvault.sqlite3'}"
DATABASES = {
    "default": database_from_url(
        DATABASE_URL, conn_max_age=env_int("CALLVAULT_DB_CONN_MAX_AGE", 600)
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("CALLVAULT_REDIS_URL")
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": REDIS_URL}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "callvault_cache",
            # The quota counters live here (guard/quotas.py): the default 300 entries would
            # cull live counters of a busy call center, and a culled counter starts afresh.
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
if TESTING and not env_bool("CALLVAULT_TEST_REAL_TASKS", False):
    TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
# The project's password policy (callvault/accounts/passwords.py): the strictest of the
# user's projects decides the length and the strength; Django's list of 20,000 common
# passwords ships with Django (no outside calls).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "callvault.accounts.passwords.SimilarityValidator"},
    {"NAME": "callvault.accounts.passwords.ProjectMinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "callvault.accounts.passwords.StrengthValidator"},
]

# Mail for the owners' security notices; without a host, notices stay on their page only.
EMAIL_HOST = env_str("CALLVAULT_EMAIL_HOST")
EMAIL_PORT = env_int("CALLVAULT_EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("CALLVAULT_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_secret("CALLVAULT_EMAIL_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("CALLVAULT_EMAIL_TLS", True)
DEFAULT_FROM_EMAIL = env_str("CALLVAULT_EMAIL_FROM", "callvault@localhost")

# --- Brute force (django-axes; callvault/accounts/lockout.py) -------------------------------
# Failures are counted per username and per address, with different limits, by our handler
# on top of axes' backend, middleware and failure log (the module docstring says why).
LOCKOUT_USER_FAILURES = env_int("CALLVAULT_LOCKOUT_USER_FAILURES", 5)
LOCKOUT_ADDRESS_FAILURES = env_int("CALLVAULT_LOCKOUT_ADDRESS_FAILURES", 50)
LOCKOUT_WINDOW_MINUTES = env_int("CALLVAULT_LOCKOUT_WINDOW_MINUTES", 60)
# The first lockout of a username within a day, the second, the third and later ones.
LOCKOUT_STEPS_MINUTES = [int(m) for m in env_list("CALLVAULT_LOCKOUT_STEPS_MINUTES", "5,60,1440")]
AXES_ENABLED = True
AXES_HANDLER = "callvault.accounts.lockout.LockoutHandler"
# The one client-IP function: forwarding headers count only from a trusted proxy.
AXES_CLIENT_IP_CALLABLE = "callvault.lib.clientip.client_ip"
# What is counted (axes' check W006 wants the address among them); the limits above decide.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = LOCKOUT_USER_FAILURES
# A failure while locked out neither counts nor extends the lockout.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The login page with "try again in N minutes", whether or not the username exists.
AXES_LOCKOUT_CALLABLE = "callvault.accounts.lockout.lockout_response"
# Successful logins are kept (axes.AccessLog): a success starts a username's count over.
AXES_DISABLE_ACCESS_LOG = False

# --- Sessions and headers (callvault/accounts/sessions.py) ----------------------------------
# The cookie lives as long as the longest lifetime a project may set (30 days); each
# project's security policy ends its members' sessions sooner (12 hours by default).
SESSION_COOKIE_AGE = 30 * 24 * 60 * 60
# The content security policy: no inline scripts or styles, nothing from other hosts. The API
# docs page (django-ninja's Swagger UI, served from its own static files) keeps it too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Second factor (callvault/accounts/twofactor.py) ----------------------------------------
OTP_TOTP_ISSUER = "callvault"
# django-otp's throttling: after each wrong code the next try waits 1, 2, 4, ... seconds.
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
# Passkeys are bound to a host name (the relying party) and an origin. Empty: the request's
# own host and scheme, which is right unless a proxy rewrites the Host header.
WEBAUTHN_RP_ID = env_str("CALLVAULT_WEBAUTHN_RP_ID")
WEBAUTHN_ORIGIN = env_str("CALLVAULT_WEBAUTHN_ORIGIN")

LANGUAGE_CODE = env_str("CALLVAULT_LANGUAGE", "ru")
LANGUAGES = [("ru", _("Russian")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("CALLVAULT_TIME_ZONE", "Europe/Moscow")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every start without it
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(DATA_DIR / "media")},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = not DEBUG and env_bool("CALLVAULT_HTTPS", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("CALLVAULT_HTTPS", not DEBUG) and not DEBUG:
    SECURE_HSTS_SECONDS = env_int("CALLVAULT_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("CALLVAULT_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("CALLVAULT_HSTS_PRELOAD", False)
    # The reverse proxy (deploy/nginx) terminates TLS and sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("CALLVAULT_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    # Subdomains and the preload list commit the whole domain to HTTPS: that is the domain
    # owner's decision (the variables above), not a defect for `check --deploy` to report.
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
    ]

# Lead intake: an order whose number already has an order in the project within this many
# hours is stored and marked as a duplicate of it (a project can override).
LEADS_DUPLICATE_WINDOW_HOURS = env_int("CALLVAULT_DUPLICATE_WINDOW_HOURS", 72)
IDEMPOTENCY_KEY_TTL_HOURS = env_int("CALLVAULT_IDEMPOTENCY_TTL_HOURS", 48)

# Call recordings (callvault/telephony/recordings.py; docs/telephony.md "Recordings"): the
# largest upload or fetched file, the hosts a PBX's recording URL may name beyond public https
# ones (a PBX on the office network), and how long one fetch may take.
RECORDING_MAX_BYTES = env_int("CALLVAULT_RECORDING_MAX_BYTES", 200 * 1024 * 1024)
RECORDING_FETCH_HOSTS = env_list("CALLVAULT_RECORDING_FETCH_HOSTS")
RECORDING_FETCH_ALLOW_PRIVATE = env_bool("CALLVAULT_RECORDING_FETCH_ALLOW_PRIVATE", False)
RECORDING_FETCH_TIMEOUT = env_int("CALLVAULT_RECORDING_FETCH_TIMEOUT", 300)
# The cloud PBX callback (telephony/providers/cloud.py) goes to public https addresses only,
# beyond these hosts; and how many caller lookups one PBX may make a minute (a PBX's secret
# would otherwise make /pbx/v1/inbound a number-to-order oracle).
TELEPHONY_CLOUD_HOSTS = env_list("CALLVAULT_TELEPHONY_CLOUD_HOSTS")
TELEPHONY_INBOUND_PER_MINUTE = env_int("CALLVAULT_TELEPHONY_INBOUND_PER_MINUTE", 60)

# The audit trail's hash chain (docs/audit.md). The Ed25519 key that signs checkpoints and
# prune records lives outside the database; `callvault audit keygen` creates it.
AUDIT_SIGNING_KEY_FILE = Path(
    env_str("CALLVAULT_AUDIT_SIGNING_KEY_FILE") or DATA_DIR / "audit-signing.key"
)
AUDIT_SIGNING_KEY_AUTOCREATE = DEBUG or TESTING
AUDIT_SEAL_INTERVAL = env_int("CALLVAULT_AUDIT_SEAL_INTERVAL", 5)
# An id gap younger than this may be a transaction still open; older ones are rollbacks.
AUDIT_SEAL_GRACE = env_int("CALLVAULT_AUDIT_SEAL_GRACE", 30)
# How far back (seconds) the sealer looks for events that committed after newer ones.
AUDIT_SEAL_LOOKBACK = env_int("CALLVAULT_AUDIT_SEAL_LOOKBACK", 600)
AUDIT_CHECKPOINT_INTERVAL = env_int("CALLVAULT_AUDIT_CHECKPOINT_INTERVAL", 3600)
AUDIT_CHECKPOINT_DIR = Path(env_str("CALLVAULT_AUDIT_CHECKPOINT_DIR") or DATA_DIR / "audit")
AUDIT_CHECKPOINT_URL = env_str("CALLVAULT_AUDIT_CHECKPOINT_URL")
AUDIT_ARCHIVE_DIR = Path(env_str("CALLVAULT_AUDIT_ARCHIVE_DIR") or DATA_DIR / "audit-archive")
AUDIT_ARCHIVE_INTERVAL = env_int("CALLVAULT_AUDIT_ARCHIVE_INTERVAL", 86400)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"no_digits": {"()": "callvault.vault.logfilter.RedactPhoneDigits"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["no_digits"],
        },
    },
    "root": {"handlers": ["console"], "level": env_str("CALLVAULT_LOG_LEVEL", "INFO")},
    # Django's own loggers get handlers without the filter by default; route them through ours
    # (an error log line quotes the URL, and a phone search's URL holds the number).
    "loggers": {
        name: {"handlers": ["console"], "level": "INFO", "propagate": False}
        for name in ("django", "django.server", "gunicorn.error")
    },
}
