/*
 * assets.c - serves the embedded web front end (assets.h): "/" is the
 * single page, anything else must be one of the embedded files. ETags let
 * the browser revalidate cheaply; the bytes change only with the binary.
 */
#include "assets.h"

#include <string.h>

#include "server.h"

const struct tg_asset *tg_asset_find(const char *path)
{
	for (size_t i = 0; i < tg_web_assets_count; i++)
		if (strcmp(tg_web_assets[i].path, path) == 0)
			return &tg_web_assets[i];
	return NULL;
}

int tg_serve_asset(struct tg_req *r)
{
	const char *path = strcmp(r->path, "/index.html") == 0 ? "/" : r->path;
	const struct tg_asset *a = tg_asset_find(path);
	if (!a)
		return tg_send_error(r, 404, "not_found", "no such page");
	const char *inm = mg_get_header(r->conn, "If-None-Match");
	if (inm && strcmp(inm, a->etag) == 0) {
		tg_send_headers(r, 304, a->content_type, -1, "no-cache", a->etag);
		return 304;
	}
	if (tg_send_headers(r, 200, a->content_type, (long long)a->size, "no-cache", a->etag) == 0 && !r->head)
		mg_write(r->conn, a->data, a->size);
	return 200;
}
