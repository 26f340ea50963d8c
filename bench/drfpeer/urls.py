from django.urls import path

from drfpeer import views

urlpatterns = [
    path("api/v1/auth", views.login),
    path("api/v1/message", views.MessageViewSet.as_view({"get": "list"})),
    path("api/v1/message/<str:pk>", views.MessageViewSet.as_view({"get": "retrieve"})),
]
