"""Tests that use the database directly, outside any request: a fixture
that seeds rows into a database of its own, and a test that calls the
application's repository function. Their queries belong to the test that
ran them: test_seeded_rows runs 6 (CREATE TABLE, 4 INSERTs and a count,
in autocommit: no implicit BEGIN or COMMIT), test_repository_function 5
(one SELECT per item from one call site: an N+1 pattern),
test_unit_of_work 20 (a CREATE TABLE, six transactions of one statement
each through one helper, and a sum: the helper's BEGIN and COMMIT repeat
six times from one call site, but transaction control is never an N+1).

The application is imported here, at collection: its own seeding then
runs before any test starts.
"""

import sqlite3

import pytest

import app


@pytest.fixture
def notes_db():
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    for body in ("first", "second", "third", "fourth"):
        con.execute("INSERT INTO notes (body) VALUES (?)", (body,))
    yield con
    con.close()


def test_seeded_rows(notes_db):
    assert notes_db.execute("SELECT count(*) FROM notes").fetchone() == (4,)


def test_repository_function():
    assert app.item_names([1, 2, 3, 4, 5]) == ["item1", "item2", "item3", "item4", "item5"]


def in_transaction(con, sql):
    con.execute("BEGIN")
    con.execute(sql)
    con.execute("COMMIT")


def test_unit_of_work():
    con = sqlite3.connect(":memory:", isolation_level=None)
    con.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    in_transaction(con, "INSERT INTO ledger (amount) VALUES (5)")
    in_transaction(con, "UPDATE ledger SET amount = amount * 2")
    in_transaction(con, "INSERT INTO ledger (amount) SELECT amount + 1 FROM ledger")
    in_transaction(con, "DELETE FROM ledger WHERE amount > 100")
    in_transaction(con, "UPDATE ledger SET amount = amount + 1 WHERE amount < 11")
    in_transaction(con, "INSERT INTO ledger (amount) VALUES (7)")
    assert con.execute("SELECT sum(amount) FROM ledger").fetchone() == (29,)
    con.close()
