/*
 * test-fingerprint.c - unit tests of SQL fingerprints and redaction
 * (collector/fingerprint.c): literals, placeholders of every driver, IN-lists,
 * comments, quoting, PASSWORD literals, and what is housekeeping (the
 * statements drivers, pools and libraries run by themselves).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector/fingerprint.h"

static int failures;

/* Checks that f (named name) turns sql into want. */
static void check(const char *name, size_t (*f)(const char *, size_t, char *, size_t), const char *sql,
		  const char *want)
{
	char out[1024];
	f(sql, strlen(sql), out, sizeof out);
	if (strcmp(out, want) != 0) {
		fprintf(stderr, "%s(%s)\n  got  %s\n  want %s\n", name, sql, out, want);
		failures++;
	}
}

static void fp(const char *sql, const char *want)
{
	check("fingerprint", tg_sql_fingerprint, sql, want);
}

static void red(const char *sql, const char *want)
{
	check("redact", tg_sql_redact, sql, want);
}

/* The statement is housekeeping (want 1) or the app's (want 0). */
static void hk(const char *sql, int want)
{
	char out[8192];
	size_t n = tg_sql_fingerprint(sql, strlen(sql), out, sizeof out);
	if (tg_sql_housekeeping(out, n) != want) {
		fprintf(stderr, "housekeeping(%s) = %d, want %d (fingerprint: %s)\n", sql, !want, want, out);
		failures++;
	}
}

static void housekeeping(void)
{
	/* asyncpg's pool reset, transaction control, savepoints */
	hk("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;", 1);
	hk("BEGIN", 1);
	hk("BEGIN ISOLATION LEVEL SERIALIZABLE;", 1);
	hk("begin immediate", 1);
	hk("START TRANSACTION READ ONLY", 1);
	hk("COMMIT", 1);
	hk("END", 1);
	hk("ROLLBACK", 1);
	hk("ABORT", 1);
	hk("SAVEPOINT sa_savepoint_1", 1);
	hk("RELEASE SAVEPOINT sa_savepoint_1", 1);
	hk("ROLLBACK TO SAVEPOINT sa_savepoint_1", 1);
	/* session state */
	hk("SET application_name = 'req-5'", 1);
	hk("SET LOCAL statement_timeout = 5000", 1);
	hk("RESET ALL", 1);
	hk("SHOW standard_conforming_strings", 1);
	hk("show transaction isolation level", 1);
	hk("DISCARD ALL", 1);
	hk("DEALLOCATE __asyncpg_stmt_1__", 1);
	hk("LISTEN jobs", 1);
	hk("UNLISTEN *", 1);
	hk("CLOSE ALL", 1);
	hk("PRAGMA foreign_keys = ON", 1);
	/* first-connect probes */
	hk("select pg_catalog.version()", 1);
	hk("select current_schema()", 1);
	hk("SELECT version()", 1);
	hk("SELECT 1", 1);
	hk("select current_setting('standard_conforming_strings')", 1);
	/* type introspection: asyncpg, psycopg 3, psycopg2's hstore lookup */
	hk("WITH RECURSIVE typeinfo_tree(oid, ns, name, kind, basetype, elemtype, elemdelim, range_subtype, "
	   "attrtypoids, attrnames, depth) AS (SELECT ti.oid, ti.ns, ti.name, 0 FROM (SELECT t.oid AS oid, "
	   "ns.nspname AS ns, (CASE WHEN t.typtype = 'd' THEN (WITH RECURSIVE typebases(oid, depth) AS "
	   "(SELECT t2.typbasetype AS oid, 0 AS depth FROM pg_type t2 WHERE t2.oid = t.oid UNION ALL SELECT "
	   "t2.typbasetype AS oid, tb.depth + 1 AS depth FROM pg_type t2, typebases tb WHERE tb.oid = t2.oid "
	   "AND t2.typbasetype != 0) SELECT oid FROM typebases ORDER BY depth DESC LIMIT 1) ELSE NULL END) "
	   "AS basetype FROM pg_catalog.pg_type AS t INNER JOIN pg_catalog.pg_namespace ns ON "
	   "(ns.oid = t.typnamespace) LEFT JOIN pg_type elem_t ON (t.typlen = -1 AND t.typelem != 0)) AS ti "
	   "WHERE ti.oid = any($1::oid[]) UNION ALL SELECT ti.oid FROM (SELECT 1) ti, typeinfo_tree tt) "
	   "SELECT DISTINCT *, basetype::regtype::text AS basetype_name FROM typeinfo_tree ORDER BY depth DESC", 1);
	hk("SELECT t.typname AS name, t.oid AS oid, t.typarray AS array_oid, t.oid::regtype::text AS regtype "
	   "FROM pg_type t WHERE t.oid = %(name)s::regtype", 1);
	hk("SELECT t.oid, typarray FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid "
	   "WHERE typname = 'hstore'", 1);
	/* the app's own */
	hk("SELECT name FROM items WHERE id = $1 /* r=5 */", 0);
	hk("SELECT 1 FROM items", 0);
	hk("UPDATE settings SET value = 'x' WHERE key = 'y'", 0);
	hk("INSERT INTO log (what) VALUES ('BEGIN')", 0);
	hk("SELECT pg_advisory_lock(42)", 0);
	hk("SELECT current_schema(), name FROM items", 0);
	hk("SELECT t.oid FROM pg_type t JOIN items i ON i.type_oid = t.oid", 0);
	hk("SELECT typname FROM pg_type", 1);
	hk("SELECT count(*) FROM pg_class", 0);
	hk("BEGIN; UPDATE items SET n = n + 1; COMMIT", 0);
	hk("START items", 0);
	hk("", 0);
	hk("/* only a comment */", 0);
}

int main(void)
{
	housekeeping();
	/* literals and placeholders of psycopg2, asyncpg, sqlite3, SQLAlchemy */
	fp("SELECT name FROM items WHERE id = 42", "select name from items where id = ?");
	fp("SELECT name FROM items WHERE id = $1", "select name from items where id = ?");
	fp("SELECT name FROM items WHERE id = ?", "select name from items where id = ?");
	fp("SELECT name FROM items WHERE id = %s", "select name from items where id = ?");
	fp("SELECT name FROM items WHERE id = %(id)s", "select name from items where id = ?");
	fp("SELECT name FROM items WHERE id = :id", "select name from items where id = ?");
	fp("select  name\n\tfrom items where name = 'it''s' and x = -3.5e+2;",
	   "select name from items where name = ? and x = ?");
	fp("SELECT E'a\\'b', $$dollar$$, $tag$x$tag$", "select ?, ?, ?");
	/* comments go, quoted identifiers stay, casts stay */
	fp("SELECT 1 /* r=17 */ -- trailing\n", "select ?");
	fp("SELECT \"Weird Col\", t1.c2 FROM t1", "select \"Weird Col\", t1.c2 from t1");
	fp("SELECT x::text FROM t", "select x::text from t");
	/* IN-lists of any length group together; one element is not a list */
	fp("SELECT * FROM t WHERE id IN (1, 2, 3)", "select * from t where id in(?+)");
	fp("SELECT * FROM t WHERE id IN (1,2,3,4,5,6,7)", "select * from t where id in(?+)");
	fp("SELECT * FROM t WHERE id IN ($1, $2)", "select * from t where id in(?+)");
	fp("SELECT * FROM t WHERE id IN (7)", "select * from t where id in(?)");
	fp("INSERT INTO t (a, b) VALUES (1, 'x')", "insert into t(a, b) values(?+)");
	/* redaction */
	red("ALTER ROLE bob PASSWORD 'hunter2'", "ALTER ROLE bob PASSWORD '[redacted]'");
	red("CREATE USER u WITH password  E'se\\'cret' VALID UNTIL 'x'",
	    "CREATE USER u WITH password  '[redacted]' VALID UNTIL 'x'");
	red("SELECT password_hash FROM users WHERE name = 'a'", "SELECT password_hash FROM users WHERE name = 'a'");
	red("SELECT 'PASSWORD' AS p", "SELECT 'PASSWORD' AS p");
	/* hash is stable and seed-dependent */
	if (tg_hash64("abc", 3, 0) != tg_hash64("abc", 3, 0) || tg_hash64("abc", 3, 0) == tg_hash64("abc", 3, 1)) {
		fprintf(stderr, "hash\n");
		failures++;
	}
	/* truncation keeps a NUL-terminated prefix */
	char small[8];
	size_t n = tg_sql_fingerprint("SELECT a_long_column FROM t", 27, small, sizeof small);
	if (n > 7 || strlen(small) != n || strncmp(small, "select", 6) != 0) {
		fprintf(stderr, "truncated fingerprint: %zu '%s'\n", n, small);
		failures++;
	}
	if (failures)
		return 1;
	printf("fingerprint: ok\n");
	return 0;
}
