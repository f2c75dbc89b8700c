"""The master's ``/api/v1/state``, read as an admin, for the chaos tests."""

from __future__ import annotations

import aiohttp


async def master_state(url: str, token: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state", headers=headers) as resp:
        state: dict[str, object] = await resp.json()
        return state
