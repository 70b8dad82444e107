"""Order pages under /p/<project>/orders/."""

from django.urls import path

from callvault.orders import dashboard, lists, views, workspace

app_name = "orders"
urlpatterns = [
    path("", lists.order_list, name="list"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("mine/", workspace.my_orders, name="mine"),
    path("next/", workspace.next_order, name="next"),
    path("<int:order_id>/", views.order_card, name="card"),
    path("<int:order_id>/reveal/", views.order_reveal, name="reveal"),
    path("<int:order_id>/call/", workspace.call, name="call"),
    path("<int:order_id>/details/", workspace.update_details, name="update"),
    path("<int:order_id>/items/", workspace.add_item, name="item_add"),
    path(
        "<int:order_id>/items/<int:item_id>/quantity/",
        workspace.set_item_quantity,
        name="item_quantity",
    ),
    path("<int:order_id>/items/<int:item_id>/remove/", workspace.remove_item, name="item_remove"),
    path("<int:order_id>/status/", workspace.change_status, name="status"),
    path("<int:order_id>/callback/", workspace.schedule_callback, name="callback"),
    path("<int:order_id>/no-answer/", workspace.record_no_answer, name="no_answer"),
    path("<int:order_id>/release/", workspace.release_order, name="release"),
    path("<int:order_id>/comments/", workspace.add_comment, name="comment"),
]
