"""Property tests of the pure parts of issue 19: token text, the Authorization
header and the trusted client-address header, over any input."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from webapp.accounts.client_ip import header_meta_key, trusted_address
from webapp.accounts.tokens import PREFIX, bearer_token, new_token, token_digest

# Text a client can put in a header (latin-1, as WSGI/ASGI hand it over).
header_text = st.text(st.characters(max_codepoint=0xFF), max_size=300)


@given(header_text)
def test_bearer_token_never_raises_and_only_takes_bearer(header):
    token = bearer_token(header)
    if token is not None:
        assert header.strip().lower().startswith("bearer")
        assert token == token.strip() and token in header


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF).filter(
    lambda c: not c.isspace()), min_size=1, max_size=200))
def test_bearer_takes_back_any_token_it_was_given(token):
    assert bearer_token(f"Bearer {token}") == token
    assert bearer_token(f"BEARER   {token}  ") == token


def test_new_tokens_differ_and_carry_their_digest_not_themselves():
    made = [new_token() for _ in range(50)]
    assert len({t for t, _, _ in made}) == 50
    for token, digest, prefix in made:
        assert token.startswith(PREFIX) and token.startswith(prefix)
        assert digest == token_digest(token) and token not in digest
        assert len(prefix) < len(token) // 2


@given(header_text)
def test_trusted_address_is_an_address_or_none(value):
    address = trusted_address(value)
    if address is not None:
        ipaddress.ip_address(address)
        assert value.split(",")[-1].strip() != ""


@given(st.lists(st.ip_addresses().map(str), min_size=1, max_size=5))
def test_trusted_address_is_the_proxys_own_entry(chain):
    assert trusted_address(", ".join(chain)) == str(ipaddress.ip_address(chain[-1]))


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,30}", fullmatch=True))
def test_header_meta_key_is_djangos(name):
    key = header_meta_key(name)
    assert key.startswith("HTTP_") and "-" not in key and key == key.upper()
