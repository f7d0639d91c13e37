"""Serve one of the pack's routes (key_routes, journal_routes) on aiohttp's test server, as ComfyUI
does: on a ``RouteTableDef``, loopback only, stopped at the end. No ComfyUI needed."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer


def serve_routes(register, user_dir, scenario):
    """``register(routes, user_dir=...)`` (checked idempotent), then ``await scenario(client)``."""

    async def main():
        routes = web.RouteTableDef()
        assert register(routes, user_dir=lambda: user_dir)
        assert not register(routes, user_dir=lambda: user_dir)  # idempotent
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            return await scenario(client)

    return asyncio.run(main())
