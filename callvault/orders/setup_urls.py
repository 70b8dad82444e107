"""Project setup pages under /p/<project>/setup/."""

from django.urls import path

from callvault.orders import setup

app_name = "setup"
urlpatterns = [
    path("statuses/", setup.statuses, name="statuses"),
    path("statuses/<int:status_id>/", setup.status_edit, name="status"),
    path("products/", setup.products, name="products"),
    path("products/<int:product_id>/", setup.product_edit, name="product"),
    path("work/", setup.work_rules, name="work"),
    path("script/", setup.script, name="script"),
    path("audit/", setup.audit_retention, name="audit"),
]
