"""A RealWorld ("Conduit") style API: the shape of the open-source FastAPI
backends TimeGlass is tried on, used by tests/realapps to check what
TimeGlass says about it against what the client sent and what PostgreSQL
logged."""
