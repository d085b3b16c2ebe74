/*
 * lib/budget.h - performance budgets for `timeglass ci`, read from the
 * [tool.timeglass] table of pyproject.toml or from a budget file of the
 * same keys at top level.
 *
 * The reader understands the small subset of TOML that budgets need:
 * comments, [table] headers with bare or quoted keys, and `key = value`
 * with integers, floats and booleans. Keys:
 *
 *   p95_ms = 200                  p95 of each route's durations, ms
 *   max_queries_per_request = 10  SQL queries of any one request
 *   allow_n_plus_one = false      an N+1 pattern in any request is a breach
 *   max_5xx = 0                   5xx responses (per run; per route in a route table)
 *   time_tolerance = 0.25         baseline timing tolerance (top level only)
 *
 * Per-route tables override the top-level values for one route:
 *   [tool.timeglass.routes."GET /items/{item_id}"]   (pyproject.toml)
 *   [routes."GET /items/{item_id}"]                  (a budget file)
 */
#ifndef TG_BUDGET_H
#define TG_BUDGET_H

#include <stddef.h>
#include <stdint.h>

enum {
	BG_P95 = 1 << 0,
	BG_QUERIES = 1 << 1,
	BG_N_PLUS_ONE = 1 << 2,
	BG_5XX = 1 << 3,
	BG_TOLERANCE = 1 << 4,
};

struct bg_limits {
	unsigned set;            /* BG_* bits of the keys given */
	double p95_ms;
	int64_t max_queries;     /* per request */
	int allow_n_plus_one;
	int64_t max_5xx;
	double time_tolerance;   /* top level only */
};

struct bg_route {
	char *key;               /* "METHOD /template" */
	struct bg_limits lim;    /* only its own keys; see bg_for_route() */
};

struct budget {
	int found;               /* some budget key was read */
	char source[512];        /* the file read */
	struct bg_limits global;
	struct bg_route *routes;
	size_t nroutes;
};

/* Reads budgets from path. pyproject != 0: only [tool.timeglass] and its
 * subtables count (a file without them gives found = 0); otherwise top-level
 * keys and [routes."..."] tables. A missing file is an error only when
 * must_exist. Returns 0, or -1 with tg_error() set ("FILE:LINE: ..."). */
int bg_read(const char *path, int pyproject, int must_exist, struct budget *b);

/* The limits that apply to route key: its table over the top level. */
struct bg_limits bg_for_route(const struct budget *b, const char *key);

void bg_free(struct budget *b);

#endif
