"""Pages of one's own account: API tokens (made, shown once, revoked) and the
password; and the login page's answer to a throttled client."""

from __future__ import annotations

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from webapp.accounts.models import ApiToken
from webapp.accounts.tokens import new_token

__all__ = ["PasswordChangeView", "lockout_response", "token_list", "token_revoke"]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "placeholder": "e.g. grafana"}))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    """The user's own tokens; a POST makes one and shows it this once."""
    form = TokenForm(request.POST or None)
    created = None
    status = 200
    if request.method == "POST":
        if not request.user.has_perm("accounts.add_apitoken"):
            return render(request, "accounts/tokens.html", _context(request, form),
                          status=403)
        if form.is_valid():
            token, digest, prefix = new_token()
            try:
                with transaction.atomic():  # a clash must not spoil the request's
                    ApiToken.objects.create(
                        user=request.user, name=form.cleaned_data["name"],
                        digest=digest, prefix=prefix)
            except IntegrityError:
                form.add_error("name", "You already have a token of that name.")
                status = 400
            else:
                created = token
                form = TokenForm()
        else:
            status = 400
    return render(request, "accounts/tokens.html",
                  {**_context(request, form), "created": created}, status=status)


def _context(request, form) -> dict:
    return {"form": form, "tokens": request.user.api_tokens.all(),
            "can_create": request.user.has_perm("accounts.add_apitoken")}


@login_required
@require_POST
def token_revoke(request, pk: int):
    """Delete one of the user's own tokens: refused from the next request on."""
    get_object_or_404(ApiToken, pk=pk, user=request.user).delete()
    return redirect("account-tokens")


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's own: the new password ends every other session (their stored
    hash no longer matches) and keeps this one."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("map")


def lockout_response(request, original_response=None, credentials=None):
    """``AXES_LOCKOUT_CALLABLE``: the login page again, with the reason, 429."""
    from axes.helpers import get_cool_off

    cool_off = get_cool_off(request)
    minutes = max(1, round(cool_off.total_seconds() / 60)) if cool_off else None
    form = AuthenticationForm(request)
    form.fields["username"].initial = (credentials or {}).get("username", "")
    return render(request, "registration/login.html",
                  {"form": form, "locked_out": True, "cooloff_minutes": minutes},
                  status=429)

