"""The sample application served by a live uvicorn process: 5 item reads
and 3 health checks over real HTTP."""

import httpx


def test_live_items(live_url):
    with httpx.Client(base_url=live_url) as c:
        for i in range(5):
            assert c.get("/items/%d" % (i + 1)).status_code == 200


def test_live_health(live_url):
    with httpx.Client(base_url=live_url) as c:
        for _ in range(3):
            assert c.get("/health").json() == {"ok": True}
