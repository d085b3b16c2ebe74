/*
 * events.c - /api/events, the live-update stream (Server-Sent Events).
 *
 * Every 500 ms the handler reads a small summary of the store (state, runs,
 * newest run and whether it records, highest request id) and sends it as a
 * "state" event when it changed; a comment line every 15 s keeps proxies and
 * the browser from timing the stream out. The page re-reads what it shows
 * when an event arrives. One civetweb thread serves each open stream until
 * the browser goes away or the server stops.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "server.h"

#define TICK_MS 100
#define EVENT_EVERY_MS 500
#define PING_EVERY_MS 15000

/* Writes the current state as JSON into buf. */
static void state_json(const char *db_path, char *buf, size_t n)
{
	struct tg_db db;
	tg_db_acquire(db_path, &db);
	struct tg_store_summary s = { 0 };
	int ok = db.state == TG_DB_OK && sqlite3_exec(db.db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
	if (ok) {
		ok = tg_store_summary(db.db, &s) == 0;
		sqlite3_exec(db.db, "COMMIT", NULL, NULL, NULL);
	}
	snprintf(buf, n,
		 "{\"state\":\"%s\",\"runs\":%lld,\"latest_run\":%lld,\"live\":%s,\"max_request_id\":%lld}",
		 ok || db.state != TG_DB_OK ? tg_db_state_name(db.state) : "bad", (long long)s.runs,
		 (long long)s.latest_run, s.latest_live ? "true" : "false", (long long)s.max_request_id);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

int tg_api_events(struct tg_req *r)
{
	if (r->rest[0])
		return tg_send_error(r, 404, "not_found", "no such API endpoint");
	if (tg_send_headers(r, 200, "text/event-stream", -1, "no-store", NULL) < 0 || r->head)
		return 200;
	static const char hello[] = "retry: 2000\n\n";
	if (mg_write(r->conn, hello, sizeof hello - 1) <= 0)
		return 200;
	char last[256] = "", cur[256], msg[320];
	int since_write = 0, since_event = EVENT_EVERY_MS;
	while (!tg_server_stopping(r->srv)) {
		if (since_event >= EVENT_EVERY_MS) {
			since_event = 0;
			state_json(r->db_path, cur, sizeof cur);
			if (strcmp(cur, last) != 0) {
				int len = snprintf(msg, sizeof msg, "event: state\ndata: %s\n\n", cur);
				if (mg_write(r->conn, msg, (size_t)len) <= 0)
					break;
				memcpy(last, cur, sizeof last);
				since_write = 0;
			} else if (since_write >= PING_EVERY_MS) {
				if (mg_write(r->conn, ": ping\n\n", 8) <= 0)
					break;
				since_write = 0;
			}
		}
		sleep_ms(TICK_MS);
		since_event += TICK_MS;
		since_write += TICK_MS;
	}
	return 200;
}
