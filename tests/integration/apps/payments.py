"""A small payments API: the integration tests' app for pipelining, long
request lines and secrets in URLs.

Routers with prefixes and a settings dependency, like a real service. The
partner endpoints call a partner's HTTP API (base URL in PARTNER_URL) with the
service's key in the query string, as many payment and mapping APIs want it:
with httpx from an async endpoint, with requests from a sync one (in the
threadpool).
"""

import os

from fastapi import APIRouter, Depends, FastAPI, Request


class Settings:
    def __init__(self):
        self.partner_url = os.environ.get("PARTNER_URL", "http://127.0.0.1:9")
        self.partner_key = os.environ.get("PARTNER_API_KEY", "")


_settings = Settings()


def get_settings() -> Settings:
    return _settings


health = APIRouter(prefix="/health", tags=["health"])


@health.api_route("/ping", methods=["GET", "HEAD"])
async def ping():
    return {"ok": True}


accounts = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])


@accounts.get("/{account_id}")
async def get_account(account_id: int, settings: Settings = Depends(get_settings)):
    return {"id": account_id, "partner": bool(settings.partner_url)}


partners = APIRouter(prefix="/api/v1/partners", tags=["partners"])


@partners.get("/{name}/quote")
async def quote(name: str, amount: int, settings: Settings = Depends(get_settings)):
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(settings.partner_url + "/v2/quotes",
                             params={"partner": name, "amount": amount, "api_key": settings.partner_key})
    return {"partner": name, "status": r.status_code, "quote": r.json()}


@partners.get("/{name}/refund")
def refund(name: str, token: str, settings: Settings = Depends(get_settings)):
    import requests

    r = requests.get("%s/v2/refunds/%s?token=%s&access_token=%s" % (settings.partner_url, name, token,
                                                                   settings.partner_key), timeout=10)
    return {"partner": name, "status": r.status_code}


auth = APIRouter(prefix="/auth", tags=["auth"])


@auth.get("/callback")
async def oauth_callback(code: str, state: str, request: Request):
    return {"state": state, "from": request.headers.get("referer", "")[:8]}


app = FastAPI(title="payments")
app.include_router(health)
app.include_router(accounts)
app.include_router(partners)
app.include_router(auth)
