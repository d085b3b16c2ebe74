"""Settings from the environment, as such projects read them."""
import os

DATABASE_DSN = os.environ.get("CONDUIT_DSN", "")
API_PREFIX = "/api/v1"
POOL_SIZE = int(os.environ.get("CONDUIT_POOL_SIZE", "8"))
