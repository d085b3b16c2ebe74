"""sqlcommenter-style comments: every statement the app sends carries the
request id it runs for, so that PostgreSQL's log can be read per request.

The request id comes from the X-Request-Id header (middleware in main.py)
through a context variable, which child tasks and threadpool workers see."""
import contextvars

request_id = contextvars.ContextVar("request_id", default="-")


def tag(sql):
    return "%s /* request_id='%s' */" % (sql, request_id.get())
