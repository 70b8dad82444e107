"""Settings for benchmarks/audit_cost.py: the product's settings plus the audit peers.

django-simple-history, django-auditlog and (on PostgreSQL) django-pghistory with its
django-pgtrigger record the models of `benchmarks.auditpeers`; the product's own apps and
migrations are unchanged, so the real `Order` and its triggers are measured as shipped.
"""

from callvault.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "simple_history", "auditlog", "benchmarks.auditpeers"]  # noqa: F405
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # The peers' app has no migrations: audit_cost.py installs pghistory's triggers itself
    # (pgtrigger.install) after `migrate --run-syncdb` has made the tables.
    INSTALLED_APPS += ["pgtrigger", "pghistory"]

# As in production: no query log in the connection (CALLVAULT_DEBUG=1 only spares the run a
# secret key and key ring of its own; the key ring is generated in the temporary data folder).
DEBUG = False
