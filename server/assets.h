/*
 * assets.h - the web front end embedded in the binary: the table written at
 * build time by gen_assets.py (index.html, app.js, app.css, favicon.svg).
 */
#ifndef TG_SERVER_ASSETS_H
#define TG_SERVER_ASSETS_H

#include <stddef.h>

struct tg_asset {
	const char *path;         /* URL path, e.g. "/assets/app.js" */
	const char *content_type; /* with charset for text */
	const unsigned char *data;
	size_t size;              /* bytes of data */
	const char *etag;         /* quoted content hash */
};

extern const struct tg_asset tg_web_assets[];
extern const size_t tg_web_assets_count;

/* The asset served at path, or NULL. */
const struct tg_asset *tg_asset_find(const char *path);

#endif
