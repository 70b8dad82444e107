"""Each monitoring test stores its sealed files in a folder of its own."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def own_media(settings: Any, tmp_path: Any) -> Any:
    """Screenshots of one test never meet another's (row ids restart with each test)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"
