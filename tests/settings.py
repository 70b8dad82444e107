"""Settings for the test suite: the product's settings with test-time defaults.

Everything still comes from the environment; this only supplies defaults a test run needs
(a throw-away data folder with its own generated key ring, a fast password hasher).
"""

import os
import tempfile

os.environ.setdefault("CALLVAULT_TESTING", "1")
os.environ.setdefault("CALLVAULT_DATA_DIR", tempfile.mkdtemp(prefix="callvault-test-"))

from callvault.settings import *  # noqa: F403

# Argon2 costs ~50 ms a hash by design; fixtures create many users. The hasher itself is
# tested explicitly in accounts/tests/test_passwords.py.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
