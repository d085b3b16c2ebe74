/*
 * collector/fingerprint.h - SQL text normalization for grouping queries and finding
 * N+1 patterns, and redaction of secrets in SQL text.
 *
 * The fingerprint of a statement is its text with comments removed,
 * whitespace collapsed, unquoted words lowercased, and every literal
 * (string, number, dollar-quoted) and parameter placeholder ($1, ?, %s,
 * %(name)s, :name) replaced by "?"; a parenthesized list of placeholders,
 * as in IN (1, 2, 3), becomes "(?+)", so IN-lists of any length group
 * together. Runs in the collector, never in the app.
 */
#ifndef TG_FINGERPRINT_H
#define TG_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

/* Writes the fingerprint of sql (n bytes) to out (cap bytes, NUL-terminated,
 * truncated when longer). Returns its length. */
size_t tg_sql_fingerprint(const char *sql, size_t n, char *out, size_t cap);

/*
 * 1 if the statement whose fingerprint is fp (n bytes, as written by
 * tg_sql_fingerprint) is housekeeping that drivers, pools and libraries
 * run by themselves rather than the app's own data access: transaction
 * control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT,
 * SAVEPOINT, RELEASE), session state (SET, RESET, SHOW, DISCARD,
 * DEALLOCATE, LISTEN, UNLISTEN, CLOSE, SQLite's PRAGMA), asyncpg's pool
 * reset (pg_advisory_unlock_all), first-connect probes (version(),
 * current_schema(), SELECT 1) and type introspection (a query of the
 * system catalogs that reads pg_type). Several statements in one text are
 * housekeeping only if each one is.
 */
int tg_sql_housekeeping(const char *fp, size_t n);

/* FNV-1a 64-bit hash of n bytes, as a signed integer for SQLite. The hash
 * of stored values (queries.fingerprint_hash): it never changes. */
int64_t tg_hash64(const void *p, size_t n, uint64_t seed);

/* A hash of n bytes for the collector's own tables, eight bytes a step (a
 * statement's text is hashed once per query): never stored, so free to
 * change. */
int64_t tg_hash_mem(const void *p, size_t n, uint64_t seed);

/* Copies sql (n bytes) to out (cap bytes, NUL-terminated) with the string
 * literal after every PASSWORD keyword replaced by '[redacted]'. Returns
 * the length written. */
size_t tg_sql_redact(const char *sql, size_t n, char *out, size_t cap);

#endif
