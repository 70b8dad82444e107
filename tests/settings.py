"""Settings for the test suite: the product's settings with test-time defaults.

Everything still comes from the environment; this only supplies defaults a test run needs
(a throw-away data folder with its own generated key ring, a fast password hasher).
"""

import os
import tempfile

os.environ.setdefault("CALLVAULT_TESTING", "1")
# The test client speaks plain HTTP; HTTPS redirects and secure cookies are checked by
# `callvault check --deploy` in tests/test_cli.py instead.
os.environ.setdefault("CALLVAULT_HTTPS", "0")
os.environ.setdefault("CALLVAULT_DATA_DIR", tempfile.mkdtemp(prefix="callvault-test-"))

from callvault.settings import *  # noqa: F403

# Argon2 costs ~50 ms a hash by design; fixtures create many users. The hasher itself is
# tested explicitly in accounts/tests/test_passwords.py.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# A file, not Django's in-memory test database: shared-cache memory databases answer
# "table is locked" at once instead of waiting, so concurrency tests could not run on SQLite.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
