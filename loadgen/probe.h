/*
 * probe.h - the "response to bad input" benchmark of `timeglass bench`:
 * from an operation's valid request, the cases that break its schema one
 * field at a time (negative: a 4xx is the right answer) and the edge values
 * it allows (boundary: anything but a 5xx is fine), and the checks applied
 * to each response, in the spirit of Schemathesis:
 *
 *   server_error        a 5xx, for any input
 *   accepted_invalid    a 2xx for input the schema forbids
 *   undocumented_status a status the operation does not document
 *   response_schema     a 2xx JSON body that breaks its documented schema
 */
#ifndef LG_PROBE_H
#define LG_PROBE_H

#include <stddef.h>

#include "openapi.h"

enum lg_check { LG_SERVER_ERROR, LG_ACCEPTED_INVALID, LG_UNDOCUMENTED_STATUS, LG_RESPONSE_SCHEMA, LG_CHECK_COUNT };

extern const char *const lg_check_names[LG_CHECK_COUNT];

struct lg_cases {
	struct lg_case *v;
	size_t n, cap;
};

/* Appends to out the probe cases of op made from its valid case (which is
 * not appended), at most max of them. Returns the number added or -1. */
int lg_probe_cases(const struct lg_spec *s, const struct lg_op *op, const struct lg_case *valid, size_t max,
		   struct lg_cases *out);
void lg_cases_free(struct lg_cases *cs);

struct lg_finding_detail {
	enum lg_check check;
	char detail[400];
};

/* Applies the checks to one response (status 0: no response, not checked);
 * body is the response body (may be NULL), content_type its type. Fills up
 * to LG_CHECK_COUNT findings and returns how many. */
int lg_check_response(const struct lg_spec *s, const struct lg_op *op, const struct lg_case *c, int status,
		      const char *content_type, const char *body, size_t body_len, int body_truncated,
		      struct lg_finding_detail out[LG_CHECK_COUNT]);

#endif
