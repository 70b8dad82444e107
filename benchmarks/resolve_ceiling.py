"""Settings for the token-resolve benchmark's server: the product's settings, one extra bare
view (`POST /bench/read`, benchmarks/resolve_ceiling_urls.py); see benchmarks/token_resolve.py.
"""

from callvault.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.resolve_ceiling_urls"
