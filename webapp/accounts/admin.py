"""Admins see and revoke everyone's tokens in Django's admin site; nobody makes
or edits one there (a token is shown once, to its owner)."""

from django.contrib import admin

from webapp.accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created", "last_used")
    list_filter = ("user",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("name", "user", "prefix", "created", "last_used")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
