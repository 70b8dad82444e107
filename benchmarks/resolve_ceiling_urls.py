"""URLs of the token-resolve benchmark's server: `POST /bench/read` beside the product's URLs.

The bare view is what Django itself can do for a token lookup: read the form field, hash it,
and read one row by its unique index with one statement (no authentication, checks, update,
audit or ORM). It reads the same table the real lookup does (telephony_calltoken).
"""

from __future__ import annotations

import hashlib

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from callvault.urls import urlpatterns as product_urlpatterns

SELECT = "SELECT id, call_id FROM telephony_calltoken WHERE token_hash = %s"


@csrf_exempt
@require_POST
def bare_read(request: HttpRequest) -> HttpResponse:
    """One keyed read of one row: the framework's ceiling for a token lookup."""
    token = request.POST.get("token", "")
    digest = hashlib.sha256(token.encode("ascii", "replace")).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute(SELECT, [digest])
        row = cursor.fetchone()
    if row is None:
        return HttpResponse("unknown", status=404, content_type="text/plain")
    return HttpResponse(f"call {row[1]}", content_type="text/plain")


urlpatterns = [path("bench/read", bare_read), *product_urlpatterns]
