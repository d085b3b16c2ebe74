/*
 * profile.c - what a request did inside the application, for the dashboard:
 * GET /api/requests/ID/queries (its SQL), GET /api/requests/ID/spans (its
 * outbound calls) and GET /api/flame (the Python stack samples of a request
 * or a route as one merged tree).
 *
 * The flame tree is built here from samples, stacks and frames with the
 * selection of `timeglass flame` (cli/cmd_flame.c): one row per (stack,
 * state) with its summed count, frames root first, waiting samples ending
 * in a "(waiting)" leaf unless one state is selected. Stacks are merged
 * root-first, heaviest first; past FLAME_MAX_NODES nodes, what does not fit
 * is merged into an "(other)" child of the deepest node that exists.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "server.h"

#define FLAME_MAX_NODES 5000

#define FRAME_WAITING (-1) /* the "(waiting)" leaf */
#define FRAME_OTHER (-2)   /* the "(other)" overflow node */
#define FRAME_ROOT (-3)

static int begin_read(sqlite3 *db)
{
	return sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void end_read(sqlite3 *db)
{
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* Sends the store_error 500 and ends the read transaction. Returns 500. */
static int db_error(struct tg_req *r, sqlite3 *db)
{
	int status = tg_send_error(r, 500, "store_error", "reading the store failed: %s", sqlite3_errmsg(db));
	end_read(db);
	return status;
}

/* Parses a whole positive decimal integer. Returns 0 or -1. */
static int parse_id(const char *s, int64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < 1)
		return -1;
	*out = v;
	return 0;
}

static void add_dur(cJSON *o, const char *base, int64_t ns)
{
	char k[48];
	snprintf(k, sizeof k, "%s_ms", base);
	tg_json_add_num(o, k, (double)ns / 1e6);
	snprintf(k, sizeof k, "%s_ns", base);
	tg_json_add_int(o, k, ns);
}

/* Start (unix ns) of request id; 1 when found, 0 when not, -1 on error. */
static int request_start(sqlite3 *db, int64_t id, int64_t *start)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT start_unix_ns FROM requests WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*start = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* Common start of the per-request handlers: the connection, a read
 * transaction and the request's start time. Returns the connection, or
 * NULL after sending an error (its status in *status). */
static sqlite3 *open_request(struct tg_req *r, struct tg_db *dbs, int64_t id, int64_t *start, int *status)
{
	sqlite3 *db = tg_req_db(r, dbs);
	if (!db) {
		*status = 503;
		return NULL;
	}
	if (begin_read(db) < 0) {
		*status = db_error(r, db);
		return NULL;
	}
	int found = request_start(db, id, start);
	if (found < 0) {
		*status = db_error(r, db);
		return NULL;
	}
	if (!found) {
		end_read(db);
		*status = tg_send_error(r, 404, "not_found", "there is no request %" PRId64 " in this store", id);
		return NULL;
	}
	return db;
}

/* One N+1 fingerprint of the summary. */
struct npo {
	char *fp;
	int64_t count, ns;
};

int tg_api_request_queries(struct tg_req *r, int64_t id)
{
	struct tg_db dbs;
	int64_t start = 0;
	int status;
	sqlite3 *db = open_request(r, &dbs, id, &start, &status);
	if (!db)
		return status;
	cJSON *body = cJSON_CreateObject();
	tg_json_add_int(body, "request", id);
	if (!tg_db_has_table(db, "queries")) {
		cJSON_AddBoolToObject(body, "available", 0);
		end_read(db);
		return tg_send_json(r, 200, body);
	}
	cJSON_AddBoolToObject(body, "available", 1);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, start_unix_ns, duration_ns, db_system, tap, database, sql, sql_truncated,"
			       " fingerprint, rows, error, call_site, duplicate, n_plus_one"
			       " FROM queries WHERE request_id = ? ORDER BY start_unix_ns, id",
			       -1, &st, NULL) != SQLITE_OK) {
		cJSON_Delete(body);
		return db_error(r, db);
	}
	sqlite3_bind_int64(st, 1, id);
	cJSON *rows = cJSON_AddArrayToObject(body, "rows");
	int64_t count = 0, total = 0, dups = 0, nnpo = 0;
	struct npo *npo = NULL;
	size_t n_npo = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = cJSON_CreateObject();
		int64_t qs = sqlite3_column_int64(st, 1), dur = sqlite3_column_int64(st, 2);
		tg_json_add_col(o, "id", st, 0);
		tg_json_add_ns(o, "start_unix_ns", qs);
		tg_json_add_num(o, "start_offset_ms", (double)(qs - start) / 1e6);
		add_dur(o, "duration", dur);
		tg_json_add_col(o, "db_system", st, 3);
		tg_json_add_col(o, "tap", st, 4);
		tg_json_add_col(o, "database", st, 5);
		tg_json_add_col(o, "sql", st, 6);
		cJSON_AddBoolToObject(o, "sql_truncated", sqlite3_column_int(st, 7));
		tg_json_add_col(o, "fingerprint", st, 8);
		tg_json_add_col(o, "rows", st, 9);
		tg_json_add_col(o, "error", st, 10);
		tg_json_add_col(o, "call_site", st, 11);
		int dup = sqlite3_column_int(st, 12) != 0, np1 = sqlite3_column_int(st, 13) != 0;
		cJSON_AddBoolToObject(o, "duplicate", dup);
		cJSON_AddBoolToObject(o, "n_plus_one", np1);
		cJSON_AddItemToArray(rows, o);
		count++;
		total += dur;
		dups += dup;
		nnpo += np1;
		if (np1) {
			const char *fp = (const char *)sqlite3_column_text(st, 8);
			fp = fp ? fp : "";
			size_t k;
			for (k = 0; k < n_npo && strcmp(npo[k].fp, fp) != 0; k++)
				;
			if (k == n_npo) {
				struct npo *nn = realloc(npo, (n_npo + 1) * sizeof *nn);
				char *copy = strdup(fp);
				if (!nn || !copy) {
					free(copy);
					if (nn)
						npo = nn;
					continue;
				}
				npo = nn;
				npo[n_npo++] = (struct npo){ .fp = copy };
			}
			npo[k].count++;
			npo[k].ns += dur;
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		for (size_t k = 0; k < n_npo; k++)
			free(npo[k].fp);
		free(npo);
		cJSON_Delete(body);
		return db_error(r, db);
	}
	end_read(db);
	cJSON *sum = cJSON_AddObjectToObject(body, "summary");
	tg_json_add_int(sum, "count", count);
	add_dur(sum, "total", total);
	tg_json_add_int(sum, "duplicates", dups);
	tg_json_add_int(sum, "n_plus_one_queries", nnpo);
	cJSON *arr = cJSON_AddArrayToObject(sum, "n_plus_one");
	for (size_t k = 0; k < n_npo; k++) {
		cJSON *o = cJSON_CreateObject();
		tg_json_add_bytes(o, "fingerprint", npo[k].fp, strlen(npo[k].fp));
		tg_json_add_int(o, "count", npo[k].count);
		add_dur(o, "total", npo[k].ns);
		cJSON_AddItemToArray(arr, o);
		free(npo[k].fp);
	}
	free(npo);
	return tg_send_json(r, 200, body);
}

int tg_api_request_spans(struct tg_req *r, int64_t id)
{
	struct tg_db dbs;
	int64_t start = 0;
	int status;
	sqlite3 *db = open_request(r, &dbs, id, &start, &status);
	if (!db)
		return status;
	cJSON *body = cJSON_CreateObject();
	tg_json_add_int(body, "request", id);
	if (!tg_db_has_table(db, "spans")) {
		cJSON_AddBoolToObject(body, "available", 0);
		end_read(db);
		return tg_send_json(r, 200, body);
	}
	cJSON_AddBoolToObject(body, "available", 1);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db,
			       "SELECT id, kind, start_unix_ns, duration_ns, method, host, path, status, request_bytes,"
			       " response_bytes, tls, error, call_site FROM spans WHERE request_id = ?"
			       " ORDER BY start_unix_ns, id",
			       -1, &st, NULL) != SQLITE_OK) {
		cJSON_Delete(body);
		return db_error(r, db);
	}
	sqlite3_bind_int64(st, 1, id);
	cJSON *rows = cJSON_AddArrayToObject(body, "rows");
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = cJSON_CreateObject();
		int64_t ss = sqlite3_column_int64(st, 2);
		tg_json_add_col(o, "id", st, 0);
		tg_json_add_col(o, "kind", st, 1);
		tg_json_add_ns(o, "start_unix_ns", ss);
		tg_json_add_num(o, "start_offset_ms", (double)(ss - start) / 1e6);
		add_dur(o, "duration", sqlite3_column_int64(st, 3));
		tg_json_add_col(o, "method", st, 4);
		tg_json_add_col(o, "host", st, 5);
		tg_json_add_col(o, "path", st, 6);
		tg_json_add_col(o, "status", st, 7);
		tg_json_add_col(o, "request_bytes", st, 8);
		tg_json_add_col(o, "response_bytes", st, 9);
		cJSON_AddBoolToObject(o, "tls", sqlite3_column_int(st, 10));
		tg_json_add_col(o, "error", st, 11);
		tg_json_add_col(o, "call_site", st, 12);
		cJSON_AddItemToArray(rows, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		cJSON_Delete(body);
		return db_error(r, db);
	}
	end_read(db);
	return tg_send_json(r, 200, body);
}

/* ---- the flame tree ---- */

struct node {
	int64_t frame;   /* frames.id, or FRAME_* */
	int64_t value;   /* samples in this subtree */
	int32_t child;   /* first child, -1 = none */
	int32_t sibling; /* next sibling, -1 = none */
};

struct tree {
	struct node *n;
	size_t len, cap;
	int32_t *slots; /* hash (parent, frame) -> node index + 1 */
	size_t nslots;  /* power of two, > 2 × the most nodes */
	int capped;     /* some stacks went to "(other)" */
};

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* The parent of node i is not stored: slots are keyed by (parent, frame)
 * and looked up with both. */
static size_t slot_of(const struct tree *t, int32_t parent, int64_t frame)
{
	return (size_t)mix((uint64_t)parent * 0x9e3779b97f4a7c15ull ^ (uint64_t)frame) & (t->nslots - 1);
}

/* Returns the child of parent for frame (created when absent and room is
 * left, or always when force), or -1 (no room, or out of memory). */
static int32_t child_of(struct tree *t, int32_t *parents, int32_t parent, int64_t frame, int force)
{
	size_t m = t->nslots - 1;
	size_t i;
	for (i = slot_of(t, parent, frame); t->slots[i]; i = (i + 1) & m) {
		int32_t k = t->slots[i] - 1;
		if (t->n[k].frame == frame && parents[k] == parent)
			return k;
	}
	if ((t->len >= FLAME_MAX_NODES && !force) || t->len >= t->cap)
		return -1;
	int32_t k = (int32_t)t->len++;
	t->n[k] = (struct node){ .frame = frame, .value = 0, .child = -1, .sibling = t->n[parent].child };
	t->n[parent].child = k;
	parents[k] = parent;
	t->slots[i] = k + 1;
	return k;
}

/* Frame labels, loaded on demand for the frames a tree uses. */
static cJSON *node_json(const struct tree *t, int32_t k, sqlite3_stmt *fst)
{
	const struct node *nd = &t->n[k];
	cJSON *o = cJSON_CreateObject();
	if (nd->frame >= 0) {
		sqlite3_reset(fst);
		sqlite3_bind_int64(fst, 1, nd->frame);
		if (sqlite3_step(fst) == SQLITE_ROW) {
			tg_json_add_col(o, "name", fst, 0);
			tg_json_add_col(o, "file", fst, 1);
			tg_json_add_col(o, "line", fst, 2);
		} else {
			cJSON_AddStringToObject(o, "name", "?");
			cJSON_AddNullToObject(o, "file");
			cJSON_AddNullToObject(o, "line");
		}
	} else {
		cJSON_AddStringToObject(o, "name", nd->frame == FRAME_WAITING ? "(waiting)"
						   : nd->frame == FRAME_OTHER ? "(other)" : "all");
		cJSON_AddNullToObject(o, "file");
		cJSON_AddNullToObject(o, "line");
	}
	tg_json_add_int(o, "value", nd->value);
	cJSON *kids = cJSON_AddArrayToObject(o, "children");
	/* Children heaviest first (then by frame id, for stable output). */
	size_t nk = 0;
	for (int32_t c = nd->child; c >= 0; c = t->n[c].sibling)
		nk++;
	int32_t *order = nk ? malloc(nk * sizeof *order) : NULL;
	if (nk && !order)
		return o;
	size_t j = 0;
	for (int32_t c = nd->child; c >= 0; c = t->n[c].sibling)
		order[j++] = c;
	for (size_t a = 1; a < nk; a++) { /* insertion sort: few children per node */
		int32_t x = order[a];
		size_t b = a;
		while (b > 0 && (t->n[order[b - 1]].value < t->n[x].value ||
				 (t->n[order[b - 1]].value == t->n[x].value && t->n[order[b - 1]].frame > t->n[x].frame))) {
			order[b] = order[b - 1];
			b--;
		}
		order[b] = x;
	}
	for (size_t a = 0; a < nk; a++)
		cJSON_AddItemToArray(kids, node_json(t, order[a], fst));
	free(order);
	return o;
}

/* Adds one stack (frame ids root first, comma-separated) with count
 * samples to the tree; waiting adds the "(waiting)" leaf. */
static void tree_add(struct tree *t, int32_t *parents, const char *frames, int waiting, int64_t count)
{
	int32_t cur = 0;
	t->n[0].value += count;
	const char *p = frames;
	int overflow = 0;
	while (*p && !overflow) {
		char *end;
		long long id = strtoll(p, &end, 10);
		if (end == p)
			break;
		p = *end == ',' ? end + 1 : end;
		int32_t k = child_of(t, parents, cur, id > 0 ? id : 0, 0);
		if (k < 0) {
			overflow = 1;
			break;
		}
		cur = k;
		t->n[cur].value += count;
	}
	if (!overflow && waiting) {
		int32_t k = child_of(t, parents, cur, FRAME_WAITING, 0);
		if (k < 0)
			overflow = 1;
		else
			t->n[k].value += count;
	}
	if (overflow) {
		int32_t k = child_of(t, parents, cur, FRAME_OTHER, 1);
		t->capped = 1;
		if (k >= 0)
			t->n[k].value += count;
	}
}

int tg_api_flame(struct tg_req *r)
{
	if (r->rest[0])
		return tg_send_error(r, 404, "not_found", "no such API endpoint");
	char buf[512], state[16] = "all";
	int64_t request = 0, run = 0;
	int n = tg_query_param(r, "request", buf, sizeof buf);
	if (n > 0 && parse_id(buf, &request) < 0)
		return tg_send_error(r, 400, "bad_param", "bad value for request (a request id)");
	n = tg_query_param(r, "run", buf, sizeof buf);
	if (n > 0 && parse_id(buf, &run) < 0)
		return tg_send_error(r, 400, "bad_param", "bad value for run (a run id)");
	char route[512] = "", method[32] = "";
	const char *tmpl = NULL;
	n = tg_query_param(r, "route", route, sizeof route);
	if (n == -2)
		return tg_send_error(r, 400, "bad_param", "the route is too long");
	if (n > 0) {
		char *sp = strchr(route, ' ');
		if (!sp || sp == route || (size_t)(sp - route) >= sizeof method || !sp[1])
			return tg_send_error(r, 400, "bad_param",
					     "bad value for route (METHOD and template, e.g. GET /items/{item_id})");
		memcpy(method, route, (size_t)(sp - route));
		method[sp - route] = 0;
		tmpl = sp + 1;
	}
	if ((request != 0) == (tmpl != NULL))
		return tg_send_error(r, 400, "bad_param", "give exactly one of request or route");
	if (tg_query_param(r, "state", state, sizeof state) == -2 ||
	    (strcmp(state, "all") != 0 && strcmp(state, "running") != 0 && strcmp(state, "waiting") != 0))
		return tg_send_error(r, 400, "bad_param", "bad value for state (running, waiting or all)");
	int all_states = strcmp(state, "all") == 0;

	struct tg_db dbs;
	sqlite3 *db = tg_req_db(r, &dbs);
	if (!db)
		return 503;
	if (begin_read(db) < 0)
		return db_error(r, db);
	if (request) {
		int64_t start;
		int found = request_start(db, request, &start);
		if (found < 0)
			return db_error(r, db);
		if (!found) {
			end_read(db);
			return tg_send_error(r, 404, "not_found", "there is no request %" PRId64 " in this store", request);
		}
	} else {
		if (!run)
			run = tg_db_int(db, "SELECT coalesce(max(id), 0) FROM runs", 0);
		char sql[96];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE id = %" PRId64, run);
		if (!run || tg_db_int(db, sql, 0) == 0) {
			end_read(db);
			return tg_send_error(r, 404, "no_such_run", "there is no run %" PRId64 " in this store", run);
		}
	}
	cJSON *body = cJSON_CreateObject();
	if (request)
		tg_json_add_int(body, "request", request);
	else {
		tg_json_add_bytes(body, "route", route, strlen(route));
		tg_json_add_int(body, "run", run);
	}
	cJSON_AddStringToObject(body, "state", state);
	if (!tg_db_has_table(db, "samples") || !tg_db_has_table(db, "stacks") || !tg_db_has_table(db, "frames")) {
		cJSON_AddBoolToObject(body, "available", 0);
		end_read(db);
		return tg_send_json(r, 200, body);
	}
	cJSON_AddBoolToObject(body, "available", 1);

	/* The selection of `timeglass flame` (cli/cmd_flame.c). */
	char sql[1024];
	snprintf(sql, sizeof sql,
		 "SELECT st.frames, s.state, sum(s.count) FROM samples s JOIN stacks st ON st.id = s.stack_id"
		 " WHERE %s AND (?4 IS NULL OR s.state = ?4) GROUP BY s.stack_id, s.state ORDER BY 3 DESC, s.stack_id",
		 request ? "s.request_id = ?1"
			 : "s.request_id IN (SELECT id FROM requests WHERE run_id = ?1 AND method = ?2"
			   " AND coalesce(route, path) = ?3)");
	sqlite3_stmt *st, *fst;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		cJSON_Delete(body);
		return db_error(r, db);
	}
	if (sqlite3_prepare_v2(db, "SELECT name, file, line FROM frames WHERE id = ?", -1, &fst, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		cJSON_Delete(body);
		return db_error(r, db);
	}
	sqlite3_bind_int64(st, 1, request ? request : run);
	if (tmpl) {
		sqlite3_bind_text(st, 2, method, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, tmpl, -1, SQLITE_STATIC);
	}
	if (!all_states)
		sqlite3_bind_text(st, 4, state, -1, SQLITE_STATIC);

	/* Every stack adds at most one node past the cap ("(other)"). */
	struct tree t = { 0 };
	t.cap = 2 * FLAME_MAX_NODES + 2;
	t.nslots = 1;
	while (t.nslots < 2 * t.cap)
		t.nslots <<= 1;
	t.n = malloc(t.cap * sizeof *t.n);
	t.slots = calloc(t.nslots, sizeof *t.slots);
	int32_t *parents = malloc(t.cap * sizeof *parents);
	if (!t.n || !t.slots || !parents) {
		free(t.n);
		free(t.slots);
		free(parents);
		sqlite3_finalize(st);
		sqlite3_finalize(fst);
		cJSON_Delete(body);
		end_read(db);
		return tg_send_json(r, 500, NULL);
	}
	t.n[0] = (struct node){ .frame = FRAME_ROOT, .value = 0, .child = -1, .sibling = -1 };
	parents[0] = -1;
	t.len = 1;
	int64_t running = 0, waiting_n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *frames = (const char *)sqlite3_column_text(st, 0);
		const char *s = (const char *)sqlite3_column_text(st, 1);
		int waiting = s && strcmp(s, "waiting") == 0;
		int64_t count = sqlite3_column_int64(st, 2);
		if (waiting)
			waiting_n += count;
		else
			running += count;
		tree_add(&t, parents, frames ? frames : "", waiting && all_states, count);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		sqlite3_finalize(fst);
		free(t.n);
		free(t.slots);
		free(parents);
		cJSON_Delete(body);
		return db_error(r, db);
	}
	tg_json_add_int(body, "total", t.n[0].value);
	tg_json_add_int(body, "running", running);
	tg_json_add_int(body, "waiting", waiting_n);
	tg_json_add_int(body, "nodes", (int64_t)t.len);
	cJSON_AddBoolToObject(body, "capped", t.capped);
	cJSON_AddItemToObject(body, "tree", node_json(&t, 0, fst));
	sqlite3_finalize(fst);
	end_read(db);
	free(t.n);
	free(t.slots);
	free(parents);
	return tg_send_json(r, 200, body);
}
