"""A session per request, and the current user from the bearer token."""
from typing import Generator, Optional

from fastapi import Depends, Header, HTTPException
from sqlmodel import Session, select

from ..core import engine
from ..models import User


def get_db() -> Generator[Session, None, None]:
    with Session(engine) as session:
        yield session


def get_current_user(session: Session = Depends(get_db), authorization: Optional[str] = Header(None)) -> User:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="Not authenticated")
    user = session.exec(select(User).where(User.token == authorization[7:])).first()
    if user is None or not user.is_active:
        raise HTTPException(status_code=403, detail="Could not validate credentials")
    return user
