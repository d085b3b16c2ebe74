/*
 * profile.c - what a request did inside the application, for the dashboard:
 * GET /api/requests/ID/queries (its SQL), GET /api/requests/ID/spans (its
 * outbound calls) and GET /api/flame (the Python stack samples of a request
 * or a route as one merged tree; GET /api/flame/diff: two routes or runs
 * merged into one tree that counts each side's samples).
 *
 * The flame tree is built here from samples, stacks and frames with the
 * selection of `timeglass flame` (cli/cmd_flame.c): one row per (stack,
 * state) with its summed count, frames root first, waiting samples ending
 * in a "(waiting)" leaf unless one state is selected. Stacks are merged
 * root-first, heaviest first; past FLAME_MAX_NODES nodes, what does not fit
 * is merged into an "(other)" child of the deepest node that exists.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "lib/readers.h"
#include "lib/util.h"
#include "server.h"

#define FLAME_MAX_NODES 5000

#define FRAME_WAITING (-1) /* the "(waiting)" leaf */
#define FRAME_OTHER (-2)   /* the "(other)" overflow node */
#define FRAME_ROOT (-3)

/* Checks that request id exists and reads its start (unix ns). Returns 0,
 * or the status of the error sent (the read transaction then ended). */
static int check_request(struct tg_req *r, sqlite3 *db, int64_t id, int64_t *start)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT start_unix_ns FROM requests WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
		return tg_store_error(r, db);
	sqlite3_bind_int64(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*start = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return tg_store_error(r, db);
	tg_read_end(db);
	return tg_send_error(r, 404, "not_found", "there is no request %" PRId64 " in this store", id);
}

/* One of a request's lists (its queries, its spans) being read: the body
 * so far and the statement over its rows, in the read transaction. */
struct req_list {
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t start; /* the request's start (unix ns) */
	cJSON *body, *rows;
};

/* Common start of GET /api/requests/ID/queries and /spans: the body
 * {"request": id, "available": ...} and, when the store has the table, its
 * "rows" array and l->st running sql with id bound (sql_old instead when
 * not NULL and the table lacks column new_column, in older schemas).
 * Returns 0, or the status of the response already sent (an error, or the
 * body of a store without the table). */
static int list_open(struct tg_req *r, int64_t id, const char *table, const char *sql, const char *new_column,
		     const char *sql_old, struct req_list *l)
{
	int status;
	l->start = 0;
	l->db = tg_read_open(r, &status);
	if (!l->db)
		return status;
	if ((status = check_request(r, l->db, id, &l->start)))
		return status;
	l->body = cJSON_CreateObject();
	tg_json_add_int(l->body, "request", id);
	if (!tg_has_table(l->db, table)) {
		cJSON_AddBoolToObject(l->body, "available", 0);
		tg_read_end(l->db);
		return tg_send_json(r, 200, l->body);
	}
	cJSON_AddBoolToObject(l->body, "available", 1);
	if (sql_old && !tg_db_has_column(l->db, table, new_column))
		sql = sql_old;
	if (sqlite3_prepare_v2(l->db, sql, -1, &l->st, NULL) != SQLITE_OK) {
		cJSON_Delete(l->body);
		return tg_store_error(r, l->db);
	}
	sqlite3_bind_int64(l->st, 1, id);
	l->rows = cJSON_AddArrayToObject(l->body, "rows");
	return 0;
}

/* Ends a list after its last row (rc: what sqlite3_step() returned last)
 * and sends it. Returns the status sent. */
static int list_send(struct tg_req *r, struct req_list *l, int rc)
{
	sqlite3_finalize(l->st);
	if (rc != SQLITE_DONE) {
		cJSON_Delete(l->body);
		return tg_store_error(r, l->db);
	}
	tg_read_end(l->db);
	return tg_send_json(r, 200, l->body);
}

/* One N+1 fingerprint of the summary. */
struct npo {
	char *fp;
	int64_t count, ns;
};

/* The columns of a request's queries, then kind and executions (constants
 * in a store older than those columns). */
#define QUERY_LIST(kind_executions)                                                                   \
	"SELECT id, start_unix_ns, duration_ns, db_system, tap, database, sql, sql_truncated, fingerprint," \
	" rows, error, call_site, duplicate, n_plus_one, " kind_executions                                  \
	" FROM queries WHERE request_id = ? ORDER BY start_unix_ns, id"

int tg_api_request_queries(struct tg_req *r, int64_t id)
{
	struct req_list l;
	int status = list_open(r, id, "queries", QUERY_LIST("kind, executions"), "kind", QUERY_LIST("'app', 1"), &l);
	if (status)
		return status;
	sqlite3_stmt *st = l.st;
	int64_t count = 0, total = 0, dups = 0, nnpo = 0, house = 0;
	struct npo *npo = NULL;
	size_t n_npo = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = cJSON_CreateObject();
		int64_t qs = sqlite3_column_int64(st, 1), dur = sqlite3_column_int64(st, 2);
		tg_json_add_col(o, "id", st, 0);
		tg_json_add_ns(o, "start_unix_ns", qs);
		tg_json_add_num(o, "start_offset_ms", (double)(qs - l.start) / 1e6);
		tg_json_add_dur(o, "duration", dur);
		tg_json_add_cols(o, st, 3, (const char *const[]){"db_system", "tap", "database", "sql", NULL});
		cJSON_AddBoolToObject(o, "sql_truncated", sqlite3_column_int(st, 7));
		tg_json_add_cols(o, st, 8, (const char *const[]){"fingerprint", "rows", "error", "call_site", NULL});
		int dup = sqlite3_column_int(st, 12) != 0, np1 = sqlite3_column_int(st, 13) != 0;
		cJSON_AddBoolToObject(o, "duplicate", dup);
		cJSON_AddBoolToObject(o, "n_plus_one", np1);
		const char *kind = (const char *)sqlite3_column_text(st, 14);
		int hk = kind && strcmp(kind, "housekeeping") == 0;
		tg_json_add_bytes(o, "kind", hk ? "housekeeping" : "app", hk ? 12 : 3);
		tg_json_add_int(o, "executions", sqlite3_column_int64(st, 15) > 0 ? sqlite3_column_int64(st, 15) : 1);
		cJSON_AddItemToArray(l.rows, o);
		count++;
		total += dur;
		dups += dup;
		nnpo += np1;
		house += hk;
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
	if (rc == SQLITE_DONE) {
		cJSON *sum = cJSON_AddObjectToObject(l.body, "summary");
		tg_json_add_int(sum, "count", count);
		tg_json_add_dur(sum, "total", total);
		tg_json_add_int(sum, "duplicates", dups);
		tg_json_add_int(sum, "n_plus_one_queries", nnpo);
		tg_json_add_int(sum, "housekeeping", house);
		cJSON *arr = cJSON_AddArrayToObject(sum, "n_plus_one");
		for (size_t k = 0; k < n_npo; k++) {
			cJSON *o = cJSON_CreateObject();
			tg_json_add_bytes(o, "fingerprint", npo[k].fp, strlen(npo[k].fp));
			tg_json_add_int(o, "count", npo[k].count);
			tg_json_add_dur(o, "total", npo[k].ns);
			cJSON_AddItemToArray(arr, o);
		}
	}
	for (size_t k = 0; k < n_npo; k++)
		free(npo[k].fp);
	free(npo);
	return list_send(r, &l, rc);
}

int tg_api_request_spans(struct tg_req *r, int64_t id)
{
	struct req_list l;
	int status = list_open(r, id, "spans",
			       "SELECT id, kind, start_unix_ns, duration_ns, method, host, path, status, request_bytes,"
			       " response_bytes, tls, error, call_site FROM spans WHERE request_id = ?"
			       " ORDER BY start_unix_ns, id",
			       NULL, NULL, &l);
	if (status)
		return status;
	sqlite3_stmt *st = l.st;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		cJSON *o = cJSON_CreateObject();
		int64_t ss = sqlite3_column_int64(st, 2);
		tg_json_add_col(o, "id", st, 0);
		tg_json_add_col(o, "kind", st, 1);
		tg_json_add_ns(o, "start_unix_ns", ss);
		tg_json_add_num(o, "start_offset_ms", (double)(ss - l.start) / 1e6);
		tg_json_add_dur(o, "duration", sqlite3_column_int64(st, 3));
		tg_json_add_cols(o, st, 4, (const char *const[]){"method", "host", "path", "status", "request_bytes",
								 "response_bytes", NULL});
		cJSON_AddBoolToObject(o, "tls", sqlite3_column_int(st, 10));
		tg_json_add_col(o, "error", st, 11);
		tg_json_add_col(o, "call_site", st, 12);
		cJSON_AddItemToArray(l.rows, o);
	}
	return list_send(r, &l, rc);
}

/* ---- the flame tree ---- */

/* A tree holds one selection (side 0), or two merged for a comparison
 * (sides 0 and 1): each node counts the samples of each side. */
struct node {
	int64_t frame;    /* frames.id, or FRAME_* */
	int64_t value[2]; /* samples in this subtree, per side */
	int32_t child;    /* first child, -1 = none */
	int32_t sibling;  /* next sibling, -1 = none */
};

struct tree {
	struct node *n;
	int32_t *parents; /* parent of each node */
	size_t len, cap;
	int32_t *slots; /* hash (parent, frame) -> node index + 1 */
	size_t nslots;  /* power of two, > 2 × the most nodes */
	int capped;     /* some stacks went to "(other)" */
	int sides;      /* 1, or 2 for a comparison */
};

/* The parent of node i is not kept in the slots: they are keyed by
 * (parent, frame) and looked up with both. */
static size_t slot_of(const struct tree *t, int32_t parent, int64_t frame)
{
	return (size_t)tg_mix64((uint64_t)parent * 0x9e3779b97f4a7c15ull ^ (uint64_t)frame) & (t->nslots - 1);
}

/* Every stack adds at most one node past the cap ("(other)"). Returns 0 or
 * -1 (out of memory, nothing to free). */
static int tree_init(struct tree *t, int sides)
{
	*t = (struct tree){ 0 };
	t->sides = sides;
	t->cap = 2 * FLAME_MAX_NODES + 2;
	t->nslots = 1;
	while (t->nslots < 2 * t->cap)
		t->nslots <<= 1;
	t->n = malloc(t->cap * sizeof *t->n);
	t->slots = calloc(t->nslots, sizeof *t->slots);
	t->parents = malloc(t->cap * sizeof *t->parents);
	if (!t->n || !t->slots || !t->parents) {
		free(t->n);
		free(t->slots);
		free(t->parents);
		return -1;
	}
	t->n[0] = (struct node){ .frame = FRAME_ROOT, .child = -1, .sibling = -1 };
	t->parents[0] = -1;
	t->len = 1;
	return 0;
}

static void tree_free(struct tree *t)
{
	free(t->n);
	free(t->slots);
	free(t->parents);
}

/* Returns the child of parent for frame (created when absent and room is
 * left, or always when force), or -1 (no room, or out of memory). */
static int32_t child_of(struct tree *t, int32_t parent, int64_t frame, int force)
{
	size_t m = t->nslots - 1;
	size_t i;
	for (i = slot_of(t, parent, frame); t->slots[i]; i = (i + 1) & m) {
		int32_t k = t->slots[i] - 1;
		if (t->n[k].frame == frame && t->parents[k] == parent)
			return k;
	}
	if ((t->len >= FLAME_MAX_NODES && !force) || t->len >= t->cap)
		return -1;
	int32_t k = (int32_t)t->len++;
	t->n[k] = (struct node){ .frame = frame, .child = -1, .sibling = t->n[parent].child };
	t->n[parent].child = k;
	t->parents[k] = parent;
	t->slots[i] = k + 1;
	return k;
}

static int64_t weight(const struct node *nd)
{
	return nd->value[0] + nd->value[1];
}

/* Frame labels, loaded on demand for the frames a tree uses. One side:
 * "value"; two: "value_a" and "value_b". */
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
	if (t->sides == 1) {
		tg_json_add_int(o, "value", nd->value[0]);
	} else {
		tg_json_add_int(o, "value_a", nd->value[0]);
		tg_json_add_int(o, "value_b", nd->value[1]);
	}
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
		int64_t wx = weight(&t->n[x]);
		size_t b = a;
		while (b > 0 && (weight(&t->n[order[b - 1]]) < wx ||
				 (weight(&t->n[order[b - 1]]) == wx && t->n[order[b - 1]].frame > t->n[x].frame))) {
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
 * samples of side to the tree; waiting adds the "(waiting)" leaf. */
static void tree_add(struct tree *t, int side, const char *frames, int waiting, int64_t count)
{
	int32_t cur = 0;
	t->n[0].value[side] += count;
	const char *p = frames;
	int overflow = 0;
	while (*p && !overflow) {
		char *end;
		long long id = strtoll(p, &end, 10);
		if (end == p)
			break;
		p = *end == ',' ? end + 1 : end;
		int32_t k = child_of(t, cur, id > 0 ? id : 0, 0);
		if (k < 0) {
			overflow = 1;
			break;
		}
		cur = k;
		t->n[cur].value[side] += count;
	}
	if (!overflow && waiting) {
		int32_t k = child_of(t, cur, FRAME_WAITING, 0);
		if (k < 0)
			overflow = 1;
		else
			t->n[k].value[side] += count;
	}
	if (overflow) {
		int32_t k = child_of(t, cur, FRAME_OTHER, 1);
		t->capped = 1;
		if (k >= 0)
			t->n[k].value[side] += count;
	}
}

/* What a tree (or one side of a comparison) reads: one request, a route
 * in a run, or (neither) every sample of a run. */
struct selection {
	int64_t request, run;
	char route[512];
	char method[32];
	const char *tmpl; /* in route, or NULL */
};

/* Reads the parameters prefix+request (when allow_request), prefix+route
 * and prefix+run into sel. Returns 0, or the status of the error sent. */
static int parse_selection(struct tg_req *r, const char *prefix, int allow_request, struct selection *sel)
{
	char name[32], buf[512];
	int n;
	memset(sel, 0, sizeof *sel);
	if (allow_request) {
		snprintf(name, sizeof name, "%srequest", prefix);
		n = tg_query_param(r, name, buf, sizeof buf);
		if (n > 0 && (tg_parse_i64(buf, &sel->request) < 0 || sel->request < 1))
			return tg_send_error(r, 400, "bad_param", "bad value for %s (a request id)", name);
	}
	snprintf(name, sizeof name, "%srun", prefix);
	n = tg_query_param(r, name, buf, sizeof buf);
	if (n > 0 && (tg_parse_i64(buf, &sel->run) < 0 || sel->run < 1))
		return tg_send_error(r, 400, "bad_param", "bad value for %s (a run id)", name);
	snprintf(name, sizeof name, "%sroute", prefix);
	n = tg_query_param(r, name, sel->route, sizeof sel->route);
	if (n == -2)
		return tg_send_error(r, 400, "bad_param", "the route is too long");
	if (n > 0) {
		char *sp = strchr(sel->route, ' ');
		if (!sp || sp == sel->route || (size_t)(sp - sel->route) >= sizeof sel->method || !sp[1])
			return tg_send_error(r, 400, "bad_param",
					     "bad value for %s (METHOD and template, e.g. GET /items/{item_id})", name);
		memcpy(sel->method, sel->route, (size_t)(sp - sel->route));
		sel->method[sp - sel->route] = 0;
		sel->tmpl = sp + 1;
	} else {
		sel->route[0] = 0;
	}
	return 0;
}

/* Checks that the selection's request or run exists (run: default the
 * newest). Returns 0, or the status of the error sent (the read
 * transaction then ended). */
static int check_selection(struct tg_req *r, sqlite3 *db, struct selection *sel)
{
	if (sel->request) {
		int64_t start;
		return check_request(r, db, sel->request, &start);
	}
	if (!sel->run && (sel->run = tg_latest_run(db)) < 0)
		sel->run = 0;
	char sql[96];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE id = %" PRId64, sel->run);
	if (!sel->run || tg_db_int(db, sql, 0) == 0) {
		tg_read_end(db);
		return tg_send_error(r, 404, "no_such_run", "there is no run %" PRId64 " in this store", sel->run);
	}
	return 0;
}

/* Adds the samples of sel (state: "all", "running" or "waiting") to side
 * of the tree, counting them in running[side] and waiting[side]. Returns
 * 0, or -1 on a store error. */
static int tree_read(struct tree *t, int side, sqlite3 *db, const struct selection *sel, const char *state,
		     int64_t *running, int64_t *waiting)
{
	int all_states = strcmp(state, "all") == 0;
	/* The selection of `timeglass flame` (lib/readers.h). */
	struct tg_samples_sel q = {
		.of = sel->request ? TG_SAMPLES_REQUEST : sel->tmpl ? TG_SAMPLES_ROUTE : TG_SAMPLES_RUN,
		.id = sel->request ? sel->request : sel->run,
		.method = sel->method,
		.route = sel->tmpl,
		.state = all_states ? NULL : state,
	};
	sqlite3_stmt *st = tg_samples_prepare(db, &q);
	if (!st)
		return -1;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *frames = (const char *)sqlite3_column_text(st, 0);
		const char *s = (const char *)sqlite3_column_text(st, 1);
		int is_waiting = s && strcmp(s, "waiting") == 0;
		int64_t count = sqlite3_column_int64(st, 2);
		if (is_waiting)
			waiting[side] += count;
		else
			running[side] += count;
		tree_add(t, side, frames ? frames : "", is_waiting && all_states, count);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void add_selection(cJSON *o, const struct selection *sel)
{
	if (sel->request) {
		tg_json_add_int(o, "request", sel->request);
		return;
	}
	if (sel->tmpl)
		tg_json_add_bytes(o, "route", sel->route, strlen(sel->route));
	else
		cJSON_AddNullToObject(o, "route");
	tg_json_add_int(o, "run", sel->run);
}

/* The flame tree of one selection (sides 1), or of two merged (sides 2:
 * GET /api/flame/diff). */
static int send_flame(struct tg_req *r, const struct selection *sels, int sides)
{
	char state[16] = "all";
	if (tg_query_param(r, "state", state, sizeof state) == -2 ||
	    (strcmp(state, "all") != 0 && strcmp(state, "running") != 0 && strcmp(state, "waiting") != 0))
		return tg_send_error(r, 400, "bad_param", "bad value for state (running, waiting or all)");
	struct selection sel[2];
	memcpy(sel, sels, (size_t)sides * sizeof *sel);
	for (int i = 0; i < sides; i++)
		if (sel[i].tmpl) /* points into its own route */
			sel[i].tmpl = sel[i].route + (sels[i].tmpl - sels[i].route);

	int status;
	sqlite3 *db = tg_read_open(r, &status);
	if (!db)
		return status;
	for (int i = 0; i < sides; i++)
		if ((status = check_selection(r, db, &sel[i])))
			return status;
	cJSON *body = cJSON_CreateObject();
	if (sides == 1) {
		add_selection(body, &sel[0]);
	} else {
		add_selection(cJSON_AddObjectToObject(body, "a"), &sel[0]);
		add_selection(cJSON_AddObjectToObject(body, "b"), &sel[1]);
	}
	cJSON_AddStringToObject(body, "state", state);
	if (!tg_has_table(db, "samples") || !tg_has_table(db, "stacks") || !tg_has_table(db, "frames")) {
		cJSON_AddBoolToObject(body, "available", 0);
		tg_read_end(db);
		return tg_send_json(r, 200, body);
	}
	cJSON_AddBoolToObject(body, "available", 1);

	sqlite3_stmt *fst;
	if (sqlite3_prepare_v2(db, "SELECT name, file, line FROM frames WHERE id = ?", -1, &fst, NULL) != SQLITE_OK) {
		cJSON_Delete(body);
		return tg_store_error(r, db);
	}
	struct tree t;
	if (tree_init(&t, sides) < 0) {
		sqlite3_finalize(fst);
		cJSON_Delete(body);
		tg_read_end(db);
		return tg_send_json(r, 500, NULL);
	}
	int64_t running[2] = { 0, 0 }, waiting[2] = { 0, 0 };
	for (int i = 0; i < sides; i++) {
		if (tree_read(&t, i, db, &sel[i], state, running, waiting) < 0) {
			sqlite3_finalize(fst);
			tree_free(&t);
			cJSON_Delete(body);
			return tg_store_error(r, db);
		}
	}
	if (sides == 1) {
		tg_json_add_int(body, "total", t.n[0].value[0]);
		tg_json_add_int(body, "running", running[0]);
		tg_json_add_int(body, "waiting", waiting[0]);
	} else {
		static const char *const key[2][3] = { { "total_a", "running_a", "waiting_a" },
						       { "total_b", "running_b", "waiting_b" } };
		for (int i = 0; i < 2; i++) {
			tg_json_add_int(body, key[i][0], t.n[0].value[i]);
			tg_json_add_int(body, key[i][1], running[i]);
			tg_json_add_int(body, key[i][2], waiting[i]);
		}
	}
	tg_json_add_int(body, "nodes", (int64_t)t.len);
	cJSON_AddBoolToObject(body, "capped", t.capped);
	cJSON_AddItemToObject(body, "tree", node_json(&t, 0, fst));
	sqlite3_finalize(fst);
	tg_read_end(db);
	tree_free(&t);
	return tg_send_json(r, 200, body);
}

/* GET /api/flame/diff?a_route=&a_run=&b_route=&b_run=[&state=]: each side
 * a route in a run, or (no route) a whole run. */
static int flame_diff(struct tg_req *r)
{
	struct selection sel[2];
	int status;
	if ((status = parse_selection(r, "a_", 0, &sel[0])) || (status = parse_selection(r, "b_", 0, &sel[1])))
		return status;
	return send_flame(r, sel, 2);
}

int tg_api_flame(struct tg_req *r)
{
	if (strcmp(r->rest, "/diff") == 0)
		return flame_diff(r);
	if (r->rest[0])
		return tg_send_error(r, 404, "not_found", "no such API endpoint");
	struct selection sel;
	int status = parse_selection(r, "", 1, &sel);
	if (status)
		return status;
	if ((sel.request != 0) == (sel.tmpl != NULL))
		return tg_send_error(r, 400, "bad_param", "give exactly one of request or route");
	return send_flame(r, &sel, 1);
}
