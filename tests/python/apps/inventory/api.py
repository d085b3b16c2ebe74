"""Version 1 of the HTTP API: /api/v1/items, /api/v1/users, /api/v1/admin/...

Each router declares its own prefix, and the routers are included into one
another the way projects split an API across modules.
"""

from typing import Optional

from fastapi import APIRouter, Depends, Header, HTTPException, Request, WebSocket

from .db import Session, get_session


def current_user(x_user: Optional[str] = Header(None)):
    return x_user or "anonymous"


def require_admin(user: str = Depends(current_user)):
    if user == "mallory":
        raise HTTPException(status_code=403, detail="not an admin")
    return user


items = APIRouter(prefix="/items", tags=["items"], dependencies=[Depends(current_user)])


@items.get("")
def list_items(limit: int = 10, db: Session = Depends(get_session)):
    return db.items(limit)


@items.post("", status_code=201)
def create_item(db: Session = Depends(get_session)):
    return {"created": True}


# A convertor in the path: FastAPI does not see "{item_id:int}" as a path
# parameter, so the endpoint reads it from the request.
@items.get("/{item_id:int}")
def get_item(request: Request, db: Session = Depends(get_session)):
    item = db.item(request.path_params["item_id"])
    if item is None:
        raise HTTPException(status_code=404, detail="no such item")
    return item


@items.put("/{item_id:int}")
def replace_item(request: Request):
    return {"replaced": request.path_params["item_id"]}


users = APIRouter(prefix="/users", tags=["users"])


@users.get("/me")
def me(user: str = Depends(current_user)):
    return {"user": user}


@users.get("/{user_id}")
def get_user(user_id: str, user: str = Depends(current_user)):
    return {"user_id": user_id, "asked_by": user}


reports = APIRouter(prefix="/reports")


@reports.get("/{report_id}")
async def get_report(report_id: int):
    return {"report": report_id}


audit = APIRouter(prefix="/log")


@audit.get("/{entry}")
async def get_audit_entry(entry: str):
    return {"entry": entry}


admin = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])
admin.include_router(reports)
admin.include_router(audit, prefix="/audit")  # a prefix on top of the router's own


# A router without a prefix of its own: its "" route is named by the
# prefix it is included with.
health = APIRouter()


@health.get("")
async def health_check():
    return {"ok": True}


live = APIRouter(prefix="/live")


@live.websocket("/{channel}")
async def live_channel(websocket: WebSocket, channel: str):
    await websocket.accept()
    await websocket.send_text("subscribed to " + channel)
    await websocket.close()


api = APIRouter(prefix="/api/v1")
api.include_router(items)
api.include_router(users)
api.include_router(admin)
api.include_router(live)
api.include_router(health, prefix="/health")
