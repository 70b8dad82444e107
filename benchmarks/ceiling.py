"""Settings for the framework-ceiling server: the product's settings, one extra bare view.

Served exactly like the product (`callvault serve`, same middleware, database settings and
gunicorn options) with DJANGO_SETTINGS_MODULE=benchmarks.ceiling; see benchmarks/lead_intake.py.
"""

from callvault.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.ceiling_urls"
