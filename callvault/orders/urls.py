"""Order pages under /p/<project>/orders/."""

from django.urls import path

from callvault.orders import lists, views

app_name = "orders"
urlpatterns = [
    path("", lists.order_list, name="list"),
    path("<int:order_id>/", views.order_card, name="card"),
    path("<int:order_id>/reveal/", views.order_reveal, name="reveal"),
]
