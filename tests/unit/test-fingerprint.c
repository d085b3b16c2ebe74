/*
 * test-fingerprint.c - unit tests of SQL fingerprints and redaction
 * (cli/fingerprint.c): literals, placeholders of every driver, IN-lists,
 * comments, quoting, and PASSWORD literals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"

static int failures;

static void fp(const char *sql, const char *want)
{
	char out[1024];
	tg_sql_fingerprint(sql, strlen(sql), out, sizeof out);
	if (strcmp(out, want) != 0) {
		fprintf(stderr, "fingerprint(%s)\n  got  %s\n  want %s\n", sql, out, want);
		failures++;
	}
}

static void red(const char *sql, const char *want)
{
	char out[1024];
	tg_sql_redact(sql, strlen(sql), out, sizeof out);
	if (strcmp(out, want) != 0) {
		fprintf(stderr, "redact(%s)\n  got  %s\n  want %s\n", sql, out, want);
		failures++;
	}
}

int main(void)
{
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
