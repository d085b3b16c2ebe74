"""Items: the template's CRUD, with sync endpoints on the request's session."""
import uuid

from fastapi import APIRouter, Depends, HTTPException
from sqlmodel import Session, func, select

from .. import deps
from ...models import Item, ItemCreate, User

router = APIRouter()


@router.get("/")
def read_items(session: Session = Depends(deps.get_db), current_user: User = Depends(deps.get_current_user),
               skip: int = 0, limit: int = 100):
    count = session.exec(select(func.count()).select_from(Item).where(Item.owner_id == current_user.id)).one()
    items = session.exec(select(Item).where(Item.owner_id == current_user.id).offset(skip).limit(limit)).all()
    return {"data": [i.dict() for i in items], "count": count}


@router.get("/{id}")
def read_item(id: uuid.UUID, session: Session = Depends(deps.get_db),
              current_user: User = Depends(deps.get_current_user)):
    item = session.get(Item, id)
    if not item:
        raise HTTPException(status_code=404, detail="Item not found")
    if item.owner_id != current_user.id and not current_user.is_superuser:
        raise HTTPException(status_code=400, detail="Not enough permissions")
    return item


@router.post("/")
def create_item(item_in: ItemCreate, session: Session = Depends(deps.get_db),
                current_user: User = Depends(deps.get_current_user)):
    item = Item(title=item_in.title, description=item_in.description, owner_id=current_user.id)
    session.add(item)
    session.commit()
    session.refresh(item)
    return item
