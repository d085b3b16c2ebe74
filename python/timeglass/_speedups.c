/*
 * _speedups.c - the marker ABI of libtimeglass.so (preload/marker.c,
 * preload/scope.c) as plain CPython functions, and the per-request wire path
 * of the middleware (see middleware.py, serve_native).
 *
 * The functions are resolved once with dlsym(RTLD_DEFAULT) (the preload
 * library sits in the global symbol scope under `timeglass run`) and called
 * directly, with str/int arguments, without ctypes marshalling. _native.py
 * uses this module when it imports (it is built for one Python ABI) and the
 * library is loaded; otherwise it falls back to ctypes with the same
 * behaviour.
 *
 * Request: the state of one request served over a socket while the library
 * records. Created by request(scope, send, owner), it enters the request's
 * scope (and sets the scope token context variable), is the `send` callable
 * handed to the application (it sends the route mark when the response
 * starts, then returns the server's own send awaitable), and done()/close()
 * finish it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MARK_ROUTE 1
#define TEXT_MAX 8192

typedef int (*abi_version_fn)(void);
typedef int (*active_fn)(void);
typedef int (*mark_fn)(int, const char *, int, const char *, size_t);
typedef int (*asgi_fn)(const char *, const char *, const char *, int, uint64_t, uint64_t, uint64_t,
		       uint64_t, const char *, int, int);
typedef uint64_t (*scope_enter_fn)(const char *, int);
typedef void (*scope_exit_fn)(uint64_t);
typedef void (*thread_enter_fn)(uint64_t);
typedef void (*thread_exit_fn)(void);
typedef void (*fd_scope_fn)(int, uint64_t, int);

static struct {
	int abi;
	active_fn active;
	mark_fn mark;
	asgi_fn asgi;
	scope_enter_fn scope_enter;
	scope_exit_fn scope_exit;
	thread_enter_fn thread_enter;
	thread_exit_fn thread_exit;
	fd_scope_fn fd_scope;
} lib;

/* Set by configure(): Python helpers for the rare paths. */
static PyObject *slow_route;  /* slow_route(scope, path0, root0, owner) -> str or None */
static PyObject *report;      /* report(exception): one warning, never raises */
static PyObject *token_var;   /* the ContextVar of the current scope token */

static PyObject *str_type, *str_get, *str_route, *str_root_path, *str_path, *str_client,
	*str_response_start, *str_empty, *str_app, *str_fastapi, *str_effective_route_context,
	*str_original_route;

static int nargs_ok(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
	if (nargs == want)
		return 1;
	PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
	return 0;
}

/* int(o), -1 with an exception on error or overflow. */
static int to_int(PyObject *o)
{
	long v = PyLong_AsLong(o);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < INT_MIN || v > INT_MAX) {
		PyErr_SetString(PyExc_OverflowError, "value does not fit in a C int");
		return -1;
	}
	return (int)v;
}

/* getattr(o, name, None) as a new reference or NULL; -1 on other errors. */
static int optional_attr(PyObject *o, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
	return PyObject_GetOptionalAttr(o, name, out);
#else
	return _PyObject_LookupAttr(o, name, out);
#endif
}

static void *sym(const char *name)
{
	return dlsym(RTLD_DEFAULT, name);
}

/* Hands the pending exception to report() (or drops it). */
static void report_error(void)
{
#if PY_VERSION_HEX >= 0x030C0000
	PyObject *value = PyErr_GetRaisedException();
#else
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	Py_XDECREF(type);
	Py_XDECREF(tb);
#endif
	if (report && value) {
		PyObject *r = PyObject_CallOneArg(report, value);
		if (r)
			Py_DECREF(r);
		else
			PyErr_Clear();
	}
	Py_XDECREF(value);
}

/* load() -> the library's ABI version (0: no usable library). */
static PyObject *sp_load(PyObject *self, PyObject *unused)
{
	abi_version_fn version = (abi_version_fn)sym("timeglass_abi_version");
	memset(&lib, 0, sizeof lib);
	if (!version)
		return PyLong_FromLong(0);
	int abi = version();
	lib.active = (active_fn)sym("timeglass_active");
	lib.mark = (mark_fn)sym("timeglass_mark");
	lib.asgi = (asgi_fn)sym("timeglass_asgi_request");
	if (!lib.active || !lib.mark || !lib.asgi)
		return PyLong_FromLong(0);
	if (abi >= 2) {
		lib.scope_enter = (scope_enter_fn)sym("timeglass_scope_enter");
		lib.scope_exit = (scope_exit_fn)sym("timeglass_scope_exit");
		lib.thread_enter = (thread_enter_fn)sym("timeglass_thread_enter");
		lib.thread_exit = (thread_exit_fn)sym("timeglass_thread_exit");
		lib.fd_scope = (fd_scope_fn)sym("timeglass_fd_scope");
		if (!lib.scope_enter || !lib.scope_exit || !lib.thread_enter || !lib.thread_exit ||
		    !lib.fd_scope)
			return PyLong_FromLong(0);
	}
	lib.abi = abi;
	return PyLong_FromLong(abi);
}

static int need_lib(void)
{
	if (lib.abi)
		return 0;
	PyErr_SetString(PyExc_RuntimeError, "timeglass: the preload library is not loaded");
	return -1;
}

/* configure(slow_route, report, token_var) */
static PyObject *sp_configure(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("configure", nargs, 3))
		return NULL;
	Py_XSETREF(slow_route, Py_NewRef(args[0]));
	Py_XSETREF(report, Py_NewRef(args[1]));
	Py_XSETREF(token_var, Py_NewRef(args[2]));
	Py_RETURN_NONE;
}

/* Text as bytes in `encoding` with errors "replace"; None and "" give NULL
 * (no error). */
static PyObject *encoded(PyObject *text, const char *encoding)
{
	if (text == Py_None || !PyUnicode_Check(text) || PyUnicode_GET_LENGTH(text) == 0)
		return NULL;
	return PyUnicode_AsEncodedString(text, encoding, "replace");
}

/* The client host (ASCII bytes or str, may be NULL) and port of the values of
 * scope["client"]: host.encode("ascii", "replace") if host else None, and
 * port or 0. */
static int host_port(PyObject *host, PyObject *port, PyObject **host_bytes, int *port_out)
{
	*host_bytes = NULL;
	*port_out = 0;
	if (host && host != Py_None) {
		if (PyBytes_Check(host) || (PyUnicode_Check(host) && PyUnicode_IS_ASCII(host) &&
					    PyUnicode_GET_LENGTH(host))) {
			*host_bytes = Py_NewRef(host); /* ASCII str: its UTF-8 is its data */
		} else if (PyUnicode_Check(host) && PyUnicode_GET_LENGTH(host)) {
			*host_bytes = PyUnicode_AsEncodedString(host, "ascii", "replace");
			if (!*host_bytes)
				return -1;
		}
	}
	if (port && port != Py_None) {
		long p = PyLong_AsLong(port);
		if (p == -1 && PyErr_Occurred()) {
			Py_CLEAR(*host_bytes);
			return -1;
		}
		*port_out = (int)p;
	}
	return 0;
}

/* The C string of what host_port() gave: bytes or an ASCII str. */
static const char *bytes_or_null(PyObject *b)
{
	if (!b)
		return NULL;
	return PyBytes_Check(b) ? PyBytes_AS_STRING(b) : PyUnicode_AsUTF8(b);
}

static int send_mark(int kind, const char *host, int port, PyObject *text)
{
	Py_ssize_t len;
	const char *data = PyUnicode_AsUTF8AndSize(text, &len);
	PyObject *tmp = NULL;
	if (!data) {
		PyErr_Clear();
		tmp = PyUnicode_AsEncodedString(text, "utf-8", "replace");
		if (!tmp)
			return -2;
		data = PyBytes_AS_STRING(tmp);
		len = PyBytes_GET_SIZE(tmp);
	}
	if (len > TEXT_MAX)
		len = TEXT_MAX;
	int r = lib.mark(kind, host, port, data, (size_t)len);
	Py_XDECREF(tmp);
	return r;
}

/* active() -> bool */
static PyObject *sp_active(PyObject *self, PyObject *unused)
{
	if (need_lib() < 0)
		return NULL;
	return PyBool_FromLong(lib.active() == 1);
}

/* mark(kind, host, port, text) -> 0 or -1 */
static PyObject *sp_mark(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("mark", nargs, 4) || need_lib() < 0)
		return NULL;
	int kind = to_int(args[0]);
	if (kind == -1 && PyErr_Occurred())
		return NULL;
	if (!PyUnicode_Check(args[3])) {
		PyErr_SetString(PyExc_TypeError, "mark: text must be str");
		return NULL;
	}
	PyObject *host;
	int port;
	if (host_port(args[1], args[2], &host, &port) < 0)
		return NULL;
	int r = send_mark(kind, bytes_or_null(host), port, args[3]);
	Py_XDECREF(host);
	if (r == -2)
		return NULL;
	return PyLong_FromLong(r);
}

static int as_u64(PyObject *o, uint64_t *out)
{
	if (o == Py_None) {
		*out = 0;
		return 0;
	}
	unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
	if (v == (unsigned long long)-1 && PyErr_Occurred())
		return -1;
	*out = v;
	return 0;
}

/* asgi_request(method, target, route, status, start_ns, end_ns,
 *              request_bytes, response_bytes, host, port, error) -> 0 or -1 */
static PyObject *sp_asgi_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("asgi_request", nargs, 11) || need_lib() < 0)
		return NULL;
	PyObject *method = NULL, *target = NULL, *route = NULL, *host = NULL, *result = NULL;
	uint64_t start, end, req_bytes, resp_bytes;
	int port, status = 0, error;
	if (as_u64(args[4], &start) < 0 || as_u64(args[5], &end) < 0 ||
	    as_u64(args[6], &req_bytes) < 0 || as_u64(args[7], &resp_bytes) < 0)
		return NULL;
	if (args[3] != Py_None && (status = to_int(args[3])) == -1 && PyErr_Occurred())
		return NULL;
	if ((error = to_int(args[10])) == -1 && PyErr_Occurred())
		return NULL;
	method = encoded(args[0], "latin-1");
	if (!method && PyErr_Occurred())
		goto out;
	target = encoded(args[1], "latin-1");
	if (!target && PyErr_Occurred())
		goto out;
	route = encoded(args[2], "utf-8");
	if (!route && PyErr_Occurred())
		goto out;
	if (host_port(args[8], args[9], &host, &port) < 0)
		goto out;
	int r = lib.asgi(method ? PyBytes_AS_STRING(method) : "", target ? PyBytes_AS_STRING(target) : "",
			 bytes_or_null(route), status, start, end > start ? end : start, req_bytes,
			 resp_bytes, bytes_or_null(host), port, error);
	result = PyLong_FromLong(r);
out:
	Py_XDECREF(method);
	Py_XDECREF(target);
	Py_XDECREF(route);
	Py_XDECREF(host);
	return result;
}

static const char *host_arg(PyObject *o)
{
	if (o == Py_None)
		return NULL;
	if (PyBytes_Check(o))
		return PyBytes_AS_STRING(o);
	PyErr_SetString(PyExc_TypeError, "host must be bytes or None");
	return NULL;
}

/* scope_enter(host: bytes | None, port) -> token */
static PyObject *sp_scope_enter(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("scope_enter", nargs, 2) || need_lib() < 0)
		return NULL;
	const char *host = host_arg(args[0]);
	if (!host && PyErr_Occurred())
		return NULL;
	int port = args[1] == Py_None ? 0 : to_int(args[1]);
	if (port == -1 && PyErr_Occurred())
		return NULL;
	return PyLong_FromUnsignedLongLong(lib.scope_enter(host, port));
}

/* scope_exit(token) */
static PyObject *sp_scope_exit(PyObject *self, PyObject *arg)
{
	uint64_t token;
	if (need_lib() < 0 || as_u64(arg, &token) < 0)
		return NULL;
	lib.scope_exit(token);
	Py_RETURN_NONE;
}

/* thread_enter(token) */
static PyObject *sp_thread_enter(PyObject *self, PyObject *arg)
{
	uint64_t token;
	if (need_lib() < 0 || as_u64(arg, &token) < 0)
		return NULL;
	lib.thread_enter(token);
	Py_RETURN_NONE;
}

/* thread_exit() */
static PyObject *sp_thread_exit(PyObject *self, PyObject *unused)
{
	if (need_lib() < 0)
		return NULL;
	lib.thread_exit();
	Py_RETURN_NONE;
}

/* fd_scope(fd, token, bind) */
static PyObject *sp_fd_scope(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("fd_scope", nargs, 3) || need_lib() < 0)
		return NULL;
	uint64_t token;
	int fd = to_int(args[0]);
	if (fd == -1 && PyErr_Occurred())
		return NULL;
	if (as_u64(args[1], &token) < 0)
		return NULL;
	int bind = PyObject_IsTrue(args[2]);
	if (bind < 0)
		return NULL;
	lib.fd_scope(fd, token, bind);
	Py_RETURN_NONE;
}

/* ---- Request ---------------------------------------------------------- */

typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	PyObject *scope, *send, *owner, *path0, *root0, *host, *ctx_token;
	int port;
	int marked;
	uint64_t token;
} Request;

static PyTypeObject RequestType;

/* dict.get(key) for a dict (borrowed, NULL without error when missing);
 * mapping.get(key) otherwise (new reference stored in *own). */
static PyObject *get_item(PyObject *map, PyObject *key, PyObject **own)
{
	*own = NULL;
	if (PyDict_CheckExact(map))
		return PyDict_GetItemWithError(map, key);
	PyObject *v = PyObject_CallMethodOneArg(map, str_get, key);
	if (!v)
		return NULL;
	if (v == Py_None) {
		Py_DECREF(v);
		return NULL;
	}
	*own = v;
	return v;
}

/* The template of the route that served the request when the scope gives
 * it outright (see _routes.fast_template, which must answer the same): the
 * request is not inside a mount (root_path is still the one it came in
 * with) and the scope holds the route; under FastAPI 0.16x, a route of an
 * included router is named by the route context FastAPI left in
 * scope["fastapi"], whose path carries the include prefixes. New reference,
 * or NULL (without error) when the slow path must decide. */
static PyObject *fast_route(Request *r)
{
	PyObject *own_route, *own_root, *own_fastapi, *path = NULL;
	PyObject *route = get_item(r->scope, str_route, &own_route);
	if (!route || route == Py_None) {
		Py_XDECREF(own_route);
		return NULL;
	}
	PyObject *root = get_item(r->scope, str_root_path, &own_root);
	if (!root && PyErr_Occurred())
		goto out;
	int same = PyObject_RichCompareBool(root ? root : str_empty, r->root0, Py_EQ);
	Py_XDECREF(own_root);
	if (same != 1)
		goto out;
	PyObject *fastapi = get_item(r->scope, str_fastapi, &own_fastapi);
	PyObject *context = NULL;
	if (fastapi && PyDict_CheckExact(fastapi))
		context = PyDict_GetItemWithError(fastapi, str_effective_route_context); /* borrowed */
	if (!context && PyErr_Occurred()) {
		Py_XDECREF(own_fastapi);
		goto out;
	}
	if (context && context != Py_None) {
		PyObject *original = NULL;
		Py_INCREF(context); /* fastapi may be a new reference */
		if (optional_attr(context, str_original_route, &original) >= 0 && original == route)
			optional_attr(context, str_path, &path);
		Py_XDECREF(original);
		Py_DECREF(context);
	} else {
		optional_attr(route, str_path, &path);
	}
	Py_XDECREF(own_fastapi);
	if (path && (!PyUnicode_CheckExact(path) || PyUnicode_GET_LENGTH(path) == 0))
		Py_CLEAR(path);
out:
	Py_XDECREF(own_route);
	return path;
}

/* Sends the route mark once (errors go to report()). */
static void mark_route(Request *r)
{
	r->marked = 1;
	PyObject *route = fast_route(r);
	if (!route) {
		PyErr_Clear();
		PyObject *args[4] = {r->scope, r->path0, r->root0, r->owner};
		route = slow_route ? PyObject_Vectorcall(slow_route, args, 4, NULL) : NULL;
		if (!route) {
			report_error();
			return;
		}
	}
	if (PyUnicode_Check(route) && PyUnicode_GET_LENGTH(route)) {
		if (send_mark(MARK_ROUTE, bytes_or_null(r->host), r->port, route) == -2)
			report_error();
	}
	Py_DECREF(route);
}

/* Request.__call__(message): the application's `send`. */
static PyObject *request_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
				    PyObject *kwnames)
{
	Request *r = (Request *)callable;
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	if (nargs != 1 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
		PyErr_SetString(PyExc_TypeError, "send() takes one message");
		return NULL;
	}
	if (!r->marked) {
		PyObject *own;
		PyObject *kind = get_item(args[0], str_type, &own);
		if (!kind && PyErr_Occurred())
			return NULL;
		int start = kind ? PyObject_RichCompareBool(kind, str_response_start, Py_EQ) : 0;
		Py_XDECREF(own);
		if (start < 0)
			return NULL;
		if (start)
			mark_route(r);
	}
	return PyObject_Vectorcall(r->send, args, 1, NULL);
}

/* request(scope, send, owner) -> Request: enters the request's scope. */
static PyObject *sp_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("request", nargs, 3) || need_lib() < 0)
		return NULL;
	PyObject *scope = args[0];
	Request *r = PyObject_GC_New(Request, &RequestType);
	if (!r)
		return NULL;
	r->vectorcall = request_vectorcall;
	r->scope = Py_NewRef(scope);
	r->send = Py_NewRef(args[1]);
	r->owner = NULL;
	r->path0 = r->root0 = r->host = r->ctx_token = NULL;
	r->port = 0;
	r->marked = 0;
	r->token = 0;
	PyObject_GC_Track(r);

	PyObject *own = NULL, *v;
	if (args[2] != Py_None) {
		r->owner = Py_NewRef(args[2]);
	} else {
		v = get_item(scope, str_app, &own);
		if (!v && PyErr_Occurred())
			goto fail;
		r->owner = Py_NewRef(v ? v : Py_None);
		Py_CLEAR(own);
	}
	v = get_item(scope, str_path, &own);
	if (!v && PyErr_Occurred())
		goto fail;
	r->path0 = Py_NewRef(v ? v : Py_None);
	Py_CLEAR(own);
	v = get_item(scope, str_root_path, &own);
	if (!v && PyErr_Occurred())
		goto fail;
	r->root0 = Py_NewRef(v ? v : str_empty);
	Py_CLEAR(own);

	PyObject *client = get_item(scope, str_client, &own);
	if (!client && PyErr_Occurred())
		goto fail;
	if (client) {
		int truth = PyObject_IsTrue(client);
		if (truth < 0)
			goto fail;
		if (truth) {
			PyObject *host = PySequence_GetItem(client, 0);
			PyObject *port = host ? PySequence_GetItem(client, 1) : NULL;
			int ok = port && host_port(host, port, &r->host, &r->port) == 0;
			Py_XDECREF(host);
			Py_XDECREF(port);
			if (!ok)
				goto fail;
		}
		Py_CLEAR(own);
	}
	if (lib.scope_enter) {
		/* The scope's root is the caller's (serve_native's) frame. */
		r->token = lib.scope_enter(bytes_or_null(r->host), r->port);
		if (r->token && token_var) {
			PyObject *t = PyLong_FromUnsignedLongLong(r->token);
			if (!t)
				goto fail;
			r->ctx_token = PyContextVar_Set(token_var, t);
			Py_DECREF(t);
			if (!r->ctx_token)
				goto fail;
		}
	}
	return (PyObject *)r;
fail:
	Py_XDECREF(own);
	if (r->token) {
		lib.scope_exit(r->token);
		r->token = 0;
	}
	Py_DECREF(r);
	return NULL;
}

/* done(): the application returned or raised; sends the route mark if the
 * response never started. */
static PyObject *request_done(PyObject *self, PyObject *unused)
{
	Request *r = (Request *)self;
	if (!r->marked)
		mark_route(r);
	Py_RETURN_NONE;
}

/* close(): ends the request's scope (once). */
static PyObject *request_close(PyObject *self, PyObject *unused)
{
	Request *r = (Request *)self;
	if (r->token) {
		uint64_t token = r->token;
		r->token = 0;
		lib.scope_exit(token);
	}
	if (r->ctx_token) {
		PyObject *t = r->ctx_token;
		r->ctx_token = NULL;
		int rc = PyContextVar_Reset(token_var, t);
		Py_DECREF(t);
		if (rc < 0)
			return NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *request_get_marked(PyObject *self, void *closure)
{
	return PyBool_FromLong(((Request *)self)->marked);
}

static PyObject *request_get_token(PyObject *self, void *closure)
{
	return PyLong_FromUnsignedLongLong(((Request *)self)->token);
}

static PyObject *request_get_host(PyObject *self, void *closure)
{
	Request *r = (Request *)self;
	if (r->host && PyUnicode_Check(r->host))
		return PyUnicode_AsASCIIString(r->host);
	return Py_NewRef(r->host ? r->host : Py_None);
}

static PyObject *request_get_port(PyObject *self, void *closure)
{
	return PyLong_FromLong(((Request *)self)->port);
}

static int request_traverse(PyObject *self, visitproc visit, void *arg)
{
	Request *r = (Request *)self;
	Py_VISIT(r->scope);
	Py_VISIT(r->send);
	Py_VISIT(r->owner);
	Py_VISIT(r->path0);
	Py_VISIT(r->root0);
	Py_VISIT(r->ctx_token);
	return 0;
}

static int request_clear(PyObject *self)
{
	Request *r = (Request *)self;
	Py_CLEAR(r->scope);
	Py_CLEAR(r->send);
	Py_CLEAR(r->owner);
	Py_CLEAR(r->path0);
	Py_CLEAR(r->root0);
	Py_CLEAR(r->host);
	Py_CLEAR(r->ctx_token);
	return 0;
}

static void request_dealloc(PyObject *self)
{
	PyObject_GC_UnTrack(self);
	request_clear(self);
	PyObject_GC_Del(self);
}

static PyMethodDef request_methods[] = {
	{"done", request_done, METH_NOARGS, "Sends the route mark if not sent yet."},
	{"close", request_close, METH_NOARGS, "Ends the request's scope."},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef request_getset[] = {
	{"marked", request_get_marked, NULL, "True once the route mark was sent.", NULL},
	{"token", request_get_token, NULL, "The scope token (0: none or closed).", NULL},
	{"host", request_get_host, NULL, "The client host (ASCII bytes) or None.", NULL},
	{"port", request_get_port, NULL, "The client port (0: none).", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RequestType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "timeglass._speedups.Request",
	.tp_basicsize = sizeof(Request),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(Request, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_dealloc = request_dealloc,
	.tp_traverse = request_traverse,
	.tp_clear = request_clear,
	.tp_methods = request_methods,
	.tp_getset = request_getset,
	.tp_doc = "One request served over a socket while the library records; "
		  "the application's send.",
};

/* ---- module ------------------------------------------------------------ */

static PyMethodDef methods[] = {
	{"load", sp_load, METH_NOARGS, "Resolves the library's functions: its ABI version, 0 if none."},
	{"configure", (PyCFunction)(void (*)(void))sp_configure, METH_FASTCALL,
	 "configure(slow_route, report, token_var)"},
	{"active", sp_active, METH_NOARGS, "True while this process is registered with a collector."},
	{"mark", (PyCFunction)(void (*)(void))sp_mark, METH_FASTCALL, "mark(kind, host, port, text)"},
	{"asgi_request", (PyCFunction)(void (*)(void))sp_asgi_request, METH_FASTCALL,
	 "asgi_request(method, target, route, status, start_ns, end_ns, request_bytes, "
	 "response_bytes, host, port, error)"},
	{"scope_enter", (PyCFunction)(void (*)(void))sp_scope_enter, METH_FASTCALL,
	 "scope_enter(host_bytes, port) -> token"},
	{"scope_exit", sp_scope_exit, METH_O, "scope_exit(token)"},
	{"thread_enter", sp_thread_enter, METH_O, "thread_enter(token)"},
	{"thread_exit", sp_thread_exit, METH_NOARGS, "thread_exit()"},
	{"fd_scope", (PyCFunction)(void (*)(void))sp_fd_scope, METH_FASTCALL, "fd_scope(fd, token, bind)"},
	{"request", (PyCFunction)(void (*)(void))sp_request, METH_FASTCALL,
	 "request(scope, send, owner) -> Request"},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "timeglass._speedups",
	.m_doc = "The marker ABI of libtimeglass.so without ctypes, and the wire request path.",
	.m_size = -1,
	.m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void);

PyMODINIT_FUNC PyInit__speedups(void)
{
	struct {
		PyObject **slot;
		const char *text;
	} strings[] = {
		{&str_type, "type"},       {&str_get, "get"},
		{&str_route, "route"},     {&str_root_path, "root_path"},
		{&str_path, "path"},       {&str_client, "client"},
		{&str_response_start, "http.response.start"},
		{&str_empty, ""},        {&str_app, "app"},
		{&str_fastapi, "fastapi"},
		{&str_effective_route_context, "effective_route_context"},
		{&str_original_route, "original_route"},
	};
	for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
		if (!*strings[i].slot && !(*strings[i].slot = PyUnicode_InternFromString(strings[i].text)))
			return NULL;
	if (PyType_Ready(&RequestType) < 0)
		return NULL;
	PyObject *m = PyModule_Create(&module);
	if (!m)
		return NULL;
	Py_INCREF(&RequestType);
	if (PyModule_AddObject(m, "Request", (PyObject *)&RequestType) < 0) {
		Py_DECREF(&RequestType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
