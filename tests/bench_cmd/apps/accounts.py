"""An accounts API behind a bearer token, for `timeglass bench` with
--openapi, --values and --header: it serves no /openapi.json of its own
(openapi_url=None), so the operations can only come from a saved document
(`python3 accounts.py` prints it).

  GET /api/v1/accounts/{account_id}   401 without `Authorization: Bearer
                                      <token>`, 404 unless the account
                                      exists (only 'acct-7731' does); one
                                      seeded bug: 500 on a non-ASCII id

Works with pydantic 1 and 2 (FastAPI 0.92 on Debian 12 and later).
"""

import json
from typing import Optional

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

app = FastAPI(title="accounts", openapi_url=None)
bearer = HTTPBearer(auto_error=False)


class Account(BaseModel):
    id: str
    owner: str
    balance_cents: int
    currency: str


class Problem(BaseModel):
    detail: str


ACCOUNTS = {b"acct-7731": Account(id="acct-7731", owner="Ada Byron", balance_cents=125000, currency="EUR")}


def caller(creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> str:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": "Bearer"})
    return creds.credentials


v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(caller)],
               responses={401: {"model": Problem}, 404: {"model": Problem}})
accounts = APIRouter(prefix="/accounts", tags=["accounts"])


@accounts.get("/{account_id}", response_model=Account)
async def get_account(account_id: str):
    account = ACCOUNTS.get(account_id.encode("ascii"))   # bug: 500 on a non-ASCII id
    if account is None:
        raise HTTPException(404, "no such account")
    return account


v1.include_router(accounts)
app.include_router(v1)


if __name__ == "__main__":
    print(json.dumps(app.openapi(), indent=2))
