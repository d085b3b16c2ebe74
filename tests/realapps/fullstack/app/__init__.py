"""The shape of the official full-stack FastAPI template's backend (SQLModel
sessions per request in sync endpoints, routers under /api/v1, a current
user from a bearer token), used by tests/realapps."""
