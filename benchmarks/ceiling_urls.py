"""URLs of the ceiling server: `POST /bench/bare` beside all of the product's URLs.

The bare view is what Django itself can do for a lead: parse the JSON body and insert one
plain row with one statement (no authentication, validation, crypto, audit or ORM).
"""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callvault.urls import urlpatterns as product_urlpatterns

CREATE_TABLE = {
    "postgresql": "CREATE TABLE IF NOT EXISTS bench_plain (id BIGSERIAL PRIMARY KEY, "
    "phone VARCHAR(40) NOT NULL, name VARCHAR(200) NOT NULL, items TEXT NOT NULL, "
    "created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP)",
    "sqlite": "CREATE TABLE IF NOT EXISTS bench_plain (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "phone VARCHAR(40) NOT NULL, name VARCHAR(200) NOT NULL, items TEXT NOT NULL, "
    "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
}
INSERT = "INSERT INTO bench_plain (phone, name, items) VALUES (%s, %s, %s) RETURNING id"


def ensure_table() -> None:
    """Create the plain table (raw SQL: it belongs to no app and has no migration)."""
    with connection.cursor() as cursor:
        cursor.execute(CREATE_TABLE[connection.vendor])


@csrf_exempt
@require_POST
def bare(request: HttpRequest) -> JsonResponse:
    """Parse the lead's JSON and insert one row: the framework's ceiling for lead intake."""
    try:
        data = json.loads(request.body)
        phone, name = str(data["phone"])[:40], str(data.get("name", ""))[:200]
        items = json.dumps(data.get("items", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        return JsonResponse({"detail": "invalid body"}, status=422)
    with connection.cursor() as cursor:
        cursor.execute(INSERT, [phone, name, items])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id}, status=201)


urlpatterns = [path("bench/bare", bare), *product_urlpatterns]
