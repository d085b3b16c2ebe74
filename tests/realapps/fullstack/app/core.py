"""Settings and the database engine. The template uses psycopg 3 where
SQLAlchemy has its dialect (2.0), psycopg2 otherwise."""
import os

import sqlalchemy
from sqlalchemy import event
from sqlmodel import create_engine

from .context import request_id

API_V1_STR = "/api/v1"
DSN = os.environ["FULLSTACK_DSN"]  # host=... port=... dbname=... user=... password=...


def _url():
    kv = dict(part.split("=", 1) for part in DSN.split())
    driver = "psycopg" if sqlalchemy.__version__ >= "2" else "psycopg2"
    return "postgresql+%s://%s:%s@%s:%s/%s" % (driver, kv["user"], kv["password"], kv["host"], kv["port"],
                                               kv["dbname"])


engine = create_engine(_url(), pool_size=5, max_overflow=10, pool_pre_ping=False,
                       connect_args={"application_name": "fullstack"})


@event.listens_for(engine, "before_cursor_execute", retval=True)
def _comment(conn, cursor, statement, parameters, context, executemany):
    """sqlcommenter: the request id on every statement the app sends."""
    return "%s /* request_id='%s' */" % (statement, request_id.get()), parameters
