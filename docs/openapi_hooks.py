"""Schemathesis hooks for docs/check-openapi.sh: credentials for the cases.

Cases take turns: one with whatever schemathesis generated (random or no
credentials), one with a fresh session cookie (a login of its own, so that
`/logout`, `/account/logout-everywhere` or a revoke in an earlier case never
leaves a later one signed out), one with a personal access token (which no
JSON route can revoke: revoking needs a session).

The hook's own logins come through `X-Forwarded-For: 192.0.2.1` (the server
trusts 127.0.0.1 as a proxy here), so the throttle counts the fuzzed
requests' failures against 127.0.0.1 and never locks these logins out.

Some operations need more than a session to go past their first refusal:
- `/login/second-factor` (and its options) needs a pending login: its
  session turn logs in a second user, who has an authenticator app (enrolled
  here on first use, the code computed from the secret), and gets the
  pending cookie. Each such login counts as a failed password until a right
  code comes, so each comes from an address of its own (198.51.100.0/24,
  203.0.113.0/24); past the account's own limit the server answers `429`
  and the cases go without.
- `GET /account/totp/qr.svg` and `POST /account/totp/confirm` need an
  enrolment under way in the session, `POST /account/passkeys` a challenge:
  the hook starts them in the fresh session (nothing is enrolled by it).
"""

import base64
import hashlib
import hmac
import itertools
import os
import struct
import sys
import time

import requests
import schemathesis

URL = os.environ["LATCHKEY_CHECK_URL"]
USERNAME = os.environ["LATCHKEY_CHECK_USERNAME"]
PASSWORD = os.environ["LATCHKEY_CHECK_PASSWORD"]
TOKEN = os.environ["LATCHKEY_CHECK_TOKEN"]
FACTOR_USERNAME = os.environ["LATCHKEY_CHECK_FACTOR_USERNAME"]
FACTOR_PASSWORD = os.environ["LATCHKEY_CHECK_FACTOR_PASSWORD"]
COOKIE = "latchkey_session"  # on loopback, without LATCHKEY_COOKIE_SECURE

# Operations whose session turn is a login waiting for its second factor.
PENDING = {
    "GET /login/second-factor",
    "POST /login/second-factor",
    "POST /login/second-factor/options",
}
# What to start in the fresh session before these operations.
PREPARE = {
    "GET /account/totp/qr.svg": "/account/totp",
    "POST /account/totp/confirm": "/account/totp",
    "POST /account/passkeys": "/account/passkeys/options",
}

# Addresses for the pending logins, one each (see above).
ADDRESSES = (f"{net}.{host}" for net in ("198.51.100", "203.0.113") for host in range(1, 255))


def totp(secret, at=None):
    """RFC 6238: SHA-1, 6 digits, 30 s."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = struct.pack(">Q", int((time.time() if at is None else at) // 30))
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def warn(message):
    print(f"openapi_hooks: {message}", file=sys.stderr)


def login(username, password, address):
    return requests.post(
        f"{URL}/login",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
        timeout=30,
    )


def enrol_factor_user():
    """Gives the second user an authenticator app (once); True when done."""
    response = login(FACTOR_USERNAME, FACTOR_PASSWORD, "192.0.2.2")
    if response.status_code == 401 and "second_factor" in response.json():
        return True  # enrolled already
    cookie = response.cookies.get(COOKIE)
    if response.status_code != 200 or cookie is None:
        warn(f"the second user's login failed ({response.status_code} {response.text!r})")
        return False
    cookies = {COOKIE: cookie}
    started = requests.post(f"{URL}/account/totp", cookies=cookies, timeout=30)
    secret = started.json().get("secret") if started.status_code == 200 else None
    if secret is None:
        warn(f"POST /account/totp failed ({started.status_code} {started.text!r})")
        return False
    confirmed = requests.post(
        f"{URL}/account/totp/confirm", json={"code": totp(secret)}, cookies=cookies, timeout=30
    )
    requests.post(f"{URL}/logout", cookies=cookies, timeout=30)
    if confirmed.status_code != 200:
        warn(f"POST /account/totp/confirm failed ({confirmed.status_code} {confirmed.text!r})")
        return False
    return True


@schemathesis.auth(refresh_interval=None, retry_on=[])
class Credentials:
    def __init__(self):
        self.turns = itertools.count()
        self.warned = set()
        self.factor_user = None  # enrolled yet: unknown, True, False

    def warn_once(self, what, message):
        if what not in self.warned:
            warn(message)
            self.warned.add(what)

    def get(self, case, context):
        turn = next(self.turns) % 3
        if turn == 0:
            return None
        if turn == 2:
            return ("bearer", TOKEN)
        label = case.operation.label
        if label in PENDING:
            return self.pending()
        response = login(USERNAME, PASSWORD, "192.0.2.1")
        cookie = response.cookies.get(COOKIE)
        if response.status_code != 200 or cookie is None:
            self.warn_once(
                "login",
                f"the seeded login failed ({response.status_code} "
                f"{response.text!r}); cases go without a session",
            )
            return None
        if label in PREPARE:
            requests.post(f"{URL}{PREPARE[label]}", cookies={COOKIE: cookie}, timeout=30)
        return ("cookie", cookie)

    def pending(self):
        """The cookie of a login waiting for the second user's code."""
        if self.factor_user is None:
            self.factor_user = enrol_factor_user()
        address = next(ADDRESSES, None)
        if not self.factor_user or address is None:
            return None
        response = login(FACTOR_USERNAME, FACTOR_PASSWORD, address)
        cookie = response.cookies.get(COOKIE)
        if response.status_code != 401 or cookie is None:
            self.warn_once(
                "pending",
                f"a pending login failed ({response.status_code} {response.text!r}); "
                "second-factor cases go without one from here on",
            )
            return None
        return ("cookie", cookie)

    def set(self, case, data, context):
        kind, value = data
        if kind == "cookie":
            case.cookies = {**(case.cookies or {}), COOKIE: value}
        else:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {value}"}
