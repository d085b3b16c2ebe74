/*
 * lib/readers.c - the shared read queries of readers.h.
 */
#include "lib/readers.h"

#include <stdio.h>

#include "common/event.h"
#include "lib/util.h"

int64_t tg_latest_run(sqlite3 *db)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM runs", -1, &st, NULL) != SQLITE_OK)
		return tg_fail("reading runs: %s", sqlite3_errmsg(db));
	int64_t id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	if (id < 0)
		return tg_fail("reading runs: %s", sqlite3_errmsg(db));
	return id;
}

int tg_has_table(sqlite3 *db, const char *name)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", -1,
			       &st, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	return yes;
}

sqlite3_stmt *tg_prepare_id(sqlite3 *db, const char *sql, int64_t id, const char *what)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		tg_fail("%s: %s", what, sqlite3_errmsg(db));
		return NULL;
	}
	sqlite3_bind_int64(st, 1, id);
	return st;
}

/* Prepares sel's query, "SELECT ... FROM samples s ...", its filter, then
 * "GROUP BY ... ORDER BY ...", bound. */
static sqlite3_stmt *prepare_sel(sqlite3 *db, const struct tg_samples_sel *sel, const char *select, const char *group)
{
	const char *where = "s.run_id = ?1 AND s.request_id IS NULL";
	switch (sel->of) {
	case TG_SAMPLES_REQUEST: where = "s.request_id = ?1"; break;
	case TG_SAMPLES_ROUTE:
		where = "s.request_id IN (SELECT id FROM requests WHERE run_id = ?1 AND method = ?2"
			" AND coalesce(route, path) = ?3)";
		break;
	case TG_SAMPLES_RUN: where = "s.run_id = ?1"; break;
	case TG_SAMPLES_OUTSIDE: break;
	}
	char sql[1024];
	snprintf(sql, sizeof sql, "%s WHERE %s AND (?4 IS NULL OR s.state = ?4) %s", select, where, group);
	sqlite3_stmt *st;
	if (!(st = tg_prepare_id(db, sql, sel->id, "reading samples")))
		return NULL;
	if (sel->of == TG_SAMPLES_ROUTE) {
		sqlite3_bind_text(st, 2, sel->method, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, sel->route, -1, SQLITE_STATIC);
	}
	if (sel->state)
		sqlite3_bind_text(st, 4, sel->state, -1, SQLITE_STATIC);
	return st;
}

sqlite3_stmt *tg_samples_prepare(sqlite3 *db, const struct tg_samples_sel *sel)
{
	return prepare_sel(db, sel,
			   "SELECT st.frames, s.state, sum(s.count) FROM samples s JOIN stacks st ON st.id = s.stack_id",
			   "GROUP BY s.stack_id, s.state ORDER BY 3 DESC, s.stack_id");
}

sqlite3_stmt *tg_samples_detail_prepare(sqlite3 *db, const struct tg_samples_sel *sel)
{
	return prepare_sel(db, sel,
			   "SELECT st.frames, s.state, sum(s.count), sum(s.cpu_ns), s.request_id,"
			   " r.method || ' ' || coalesce(r.route, r.path), s.tid"
			   " FROM samples s JOIN stacks st ON st.id = s.stack_id LEFT JOIN requests r ON r.id = s.request_id",
			   "GROUP BY s.stack_id, s.state, s.request_id, s.process_id, s.tid"
			   " ORDER BY 3 DESC, s.stack_id, s.request_id, s.tid");
}

static const char *const flag_names[TG_REQ_FLAG_BITS] = {
	"head", "upgrade", "target_truncated", "headers_truncated",
	"chunked_request", "chunked_response", "continue", "asgi",
};
_Static_assert(TG_REQF_HEAD == 1 << 0 && TG_REQF_UPGRADE == 1 << 1 && TG_REQF_TARGET_TRUNCATED == 1 << 2 &&
		       TG_REQF_HEADERS_TRUNCATED == 1 << 3 && TG_REQF_CHUNKED_REQ == 1 << 4 &&
		       TG_REQF_CHUNKED_RESP == 1 << 5 && TG_REQF_CONTINUE == 1 << 6 &&
		       TG_REQF_ASGI == 1 << 7,
	       "flag_names follows the TG_REQF_* bits");

const char *tg_req_flag_name(unsigned bit)
{
	return bit < TG_REQ_FLAG_BITS ? flag_names[bit] : NULL;
}
