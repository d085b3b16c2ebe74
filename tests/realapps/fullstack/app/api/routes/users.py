"""Users: the current user, and the superuser's list with item counts (the
lazy-loading N+1 such projects ship)."""
from fastapi import APIRouter, Depends, HTTPException
from sqlmodel import Session, select

from .. import deps
from ...models import User

router = APIRouter()


@router.get("/me")
def read_user_me(current_user: User = Depends(deps.get_current_user)):
    return {"email": current_user.email, "full_name": current_user.full_name}


@router.get("/")
def read_users(session: Session = Depends(deps.get_db), current_user: User = Depends(deps.get_current_user)):
    if not current_user.is_superuser:
        raise HTTPException(status_code=403, detail="The user doesn't have enough privileges")
    users = session.exec(select(User).order_by(User.email).limit(8)).all()
    return [{"email": u.email, "items": len(u.items)} for u in users]  # one lazy load per user
