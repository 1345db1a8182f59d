"""Schemathesis hooks for docs/check-openapi.sh: credentials for the cases.

Cases take turns: one with whatever schemathesis generated (random or no
credentials), one with a fresh session cookie (a login of its own, so that
`/logout`, `/account/logout-everywhere` or a revoke in an earlier case never
leaves a later one signed out), one with a personal access token (which no
JSON route can revoke: revoking needs a session).

The hook's own logins come through `X-Forwarded-For: 192.0.2.1` (the server
trusts 127.0.0.1 as a proxy here), so the throttle counts the fuzzed
requests' failures against 127.0.0.1 and never locks these logins out.
"""

import itertools
import os
import sys

import requests
import schemathesis

URL = os.environ["LATCHKEY_CHECK_URL"]
USERNAME = os.environ["LATCHKEY_CHECK_USERNAME"]
PASSWORD = os.environ["LATCHKEY_CHECK_PASSWORD"]
TOKEN = os.environ["LATCHKEY_CHECK_TOKEN"]
COOKIE = "latchkey_session"  # on loopback, without LATCHKEY_COOKIE_SECURE


@schemathesis.auth(refresh_interval=None, retry_on=[])
class Credentials:
    def __init__(self):
        self.turns = itertools.count()
        self.warned = False

    def get(self, case, context):
        turn = next(self.turns) % 3
        if turn == 0:
            return None
        if turn == 2:
            return ("bearer", TOKEN)
        response = requests.post(
            f"{URL}/login",
            json={"username": USERNAME, "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.1"},
            timeout=30,
        )
        cookie = response.cookies.get(COOKIE)
        if response.status_code != 200 or cookie is None:
            if not self.warned:
                print(
                    f"openapi_hooks: the seeded login failed ({response.status_code} "
                    f"{response.text!r}); cases go without a session",
                    file=sys.stderr,
                )
                self.warned = True
            return None
        return ("cookie", cookie)

    def set(self, case, data, context):
        kind, value = data
        if kind == "cookie":
            case.cookies = {**(case.cookies or {}), COOKIE: value}
        else:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {value}"}
