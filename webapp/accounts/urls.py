"""Routes of one's own account (mounted at /account/ by ``webapp.urls``)."""

from django.urls import path

from webapp.accounts import views

urlpatterns = [
    path("tokens/", views.token_list, name="account-tokens"),
    path("tokens/<int:pk>/revoke/", views.token_revoke, name="account-token-revoke"),
    path("password/", views.PasswordChangeView.as_view(), name="account-password"),
]
