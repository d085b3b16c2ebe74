"""SQLModel tables, as the template declares them."""
import uuid
from typing import List, Optional

from sqlmodel import Field, Relationship, SQLModel


class User(SQLModel, table=True):
    __tablename__ = "user"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(index=True)
    full_name: Optional[str] = None
    is_active: bool = True
    is_superuser: bool = False
    token: str
    items: List["Item"] = Relationship(back_populates="owner")


class Item(SQLModel, table=True):
    __tablename__ = "item"
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    title: str
    description: Optional[str] = None
    owner_id: uuid.UUID = Field(foreign_key="user.id")
    owner: Optional[User] = Relationship(back_populates="items")


class ItemCreate(SQLModel):
    title: str
    description: Optional[str] = None
