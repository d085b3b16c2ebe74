"""The API: routers included with prefixes, two levels deep."""
from fastapi import APIRouter

from .routes import articles, profiles, system

api_router = APIRouter()
api_router.include_router(articles.router, prefix="/articles", tags=["articles"])
api_router.include_router(profiles.router, prefix="/profiles", tags=["profiles"])
api_router.include_router(system.router, prefix="/system", tags=["system"])
