"""The dashboard in a browser: a token once (form or ?token=) becomes an HttpOnly, SameSite=Strict cookie.

The cookie opens the read-only views (GET) and never a call that changes
something (POST), so another site cannot make a signed-in browser act.
"""

from __future__ import annotations

import aiohttp

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import FrameworkId
from edgerm.master.http_auth import COOKIE
from edgerm.master.main import RunningMaster
from edgerm.model import FrameworkInfo


async def _signed_in(master: RunningMaster, how: str) -> aiohttp.ClientSession:
    assert master.tokens is not None
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1: an IP host
    if how == "query":
        r = await http.get(master.url + "/", params={"token": master.tokens.admin}, allow_redirects=False)
    else:
        r = await http.post(master.url + "/login", data={"token": master.tokens.admin}, allow_redirects=False)
    async with r:
        assert r.status == 303 and r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    return http


async def test_sign_in_by_query_or_form_then_the_cookie_opens_the_views(master: RunningMaster) -> None:
    for how in ("query", "form"):
        http = await _signed_in(master, how)
        try:
            for path in ("/", "/api/v1/state"):
                async with http.get(master.url + path) as r:
                    assert r.status == 200, path
            body = wire.encode_call(m.Subscribe(FrameworkInfo(FrameworkId(""), "via-cookie")))
            headers = {"Content-Type": "application/x-protobuf"}
            async with http.post(master.url + "/api/v1/scheduler", data=body, headers=headers) as r:
                assert r.status == 401  # POST never takes the cookie
            async with http.get(master.url + "/logout", allow_redirects=False) as r:
                assert r.status == 303
            async with http.get(master.url + "/api/v1/state") as r:
                assert r.status == 401
        finally:
            await http.close()


async def test_bad_sign_ins_are_refused(master: RunningMaster, session: aiohttp.ClientSession) -> None:
    assert master.tokens is not None
    for data in ({"token": "edgerm_admin_guess"}, {"token": master.tokens.join}, {}):
        async with session.post(master.url + "/login", data=data, allow_redirects=False) as r:
            assert r.status == 401 and COOKIE not in r.cookies
    async with session.get(master.url + "/", params={"token": "nope"}, allow_redirects=False) as r:
        assert r.status == 401 and COOKIE not in r.cookies
    async with session.get(master.url + "/", cookies={COOKIE: "forged"}) as r:
        assert r.status == 401
