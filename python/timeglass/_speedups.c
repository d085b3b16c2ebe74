/*
 * _speedups.c - the marker ABI of libtimeglass.so (preload/marker.c,
 * preload/scope.c) as plain CPython functions, and the per-request wire path
 * of the middleware (see middleware.py, serve_native).
 *
 * The functions are resolved once with dlsym(RTLD_DEFAULT) (the preload
 * library sits in the global symbol scope under `timeglass run`) and called
 * directly, with str/int arguments, without ctypes marshalling. _native.py
 * uses this module when it imports and the library is loaded; otherwise it
 * falls back to ctypes with the same behaviour.
 *
 * The source is built twice: for the interpreter the build is configured
 * with (its own ABI, the fastest), and with Py_LIMITED_API for the stable
 * ABI (_speedups.abi3.so), which any CPython from 3.11 on loads (not the
 * free-threaded builds). What the limited API of 3.11 lacks is provided
 * under #ifdef Py_LIMITED_API below: heap types from specs instead of
 * static ones, tp_call instead of vectorcall, the ContextVar's methods
 * instead of the PyContextVar_* functions, and function forms of the
 * macros that read objects' fields.
 *
 * Request: the state of one request served over a socket while the library
 * records. Created by request(scope, receive, send, owner), it enters the
 * request's scope on the request's socket (and sets the scope token context
 * variable), is the `send` callable handed to the application (it sends the
 * route mark when the response starts, then returns the server's own send
 * awaitable), and done()/close() finish it.
 *
 * Marker and Serve: the bootstrap's marker around a Starlette application
 * (see _autopatch.py). An HTTP request on a socket while the library
 * records is served here whole: the Marker begins the request's scope with
 * its caller's coroutine frame (ServerErrorMiddleware's) as the root, hands
 * the application a Request as its send, and returns a Serve, the
 * application's awaitable that finishes the request when it is over. No
 * Python frame of ours runs per request; the rest (websockets, in-process
 * transports, nested applications) goes to the Python marker.
 *
 * TaskFactory: the event loop's task factory while the library records. A
 * task created inside a request's scope (asyncio.gather, create_task, a
 * TaskGroup) belongs to that request: its coroutine's frame is registered
 * as a root of the request's scope until the task is done.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef Py_LIMITED_API
#include <structmember.h>

/* What the limited API of 3.11 lacks, in terms of what it has. */
static PyObject *str_var_get, *str_set, *str_reset, *str_self_attr, *method_type, *coro_type;

#ifndef Py_SETREF
#define Py_SETREF(dst, src) \
	do { \
		PyObject **_p = (PyObject **)&(dst); \
		PyObject *_old = *_p; \
		*_p = (PyObject *)(src); \
		Py_DECREF(_old); \
	} while (0)
#endif
#ifndef Py_XSETREF
#define Py_XSETREF(dst, src) \
	do { \
		PyObject **_p = (PyObject **)&(dst); \
		PyObject *_old = *_p; \
		*_p = (PyObject *)(src); \
		Py_XDECREF(_old); \
	} while (0)
#endif

#define TG_ARGS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1))
typedef PyObject *(*tg_vectorcallfunc)(PyObject *, PyObject *const *, size_t, PyObject *);
#define vectorcallfunc tg_vectorcallfunc

static Py_ssize_t tg_nargs(size_t nargsf)
{
	return (Py_ssize_t)(nargsf & ~TG_ARGS_OFFSET);
}
#define PyVectorcall_NARGS tg_nargs

/* Vectorcall itself, stable ABI from 3.12 on: set at init when the running
 * interpreter is one of those. */
static PyObject *(*tg_real_vectorcall)(PyObject *, PyObject *const *, size_t, PyObject *);

/* callable(*args[:nargs], **dict(zip(kwnames, args[nargs:]))) */
static PyObject *tg_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	if (tg_real_vectorcall)
		return tg_real_vectorcall(callable, args, nargsf, kwnames);
	Py_ssize_t nargs = tg_nargs(nargsf), nkw = kwnames ? PyTuple_Size(kwnames) : 0;
	PyObject *pos = PyTuple_New(nargs), *kw = NULL, *result = NULL;
	if (!pos)
		return NULL;
	for (Py_ssize_t i = 0; i < nargs; i++) {
		Py_INCREF(args[i]);
		PyTuple_SetItem(pos, i, args[i]);
	}
	if (nkw) {
		if (!(kw = PyDict_New()))
			goto out;
		for (Py_ssize_t i = 0; i < nkw; i++)
			if (PyDict_SetItem(kw, PyTuple_GetItem(kwnames, i), args[nargs + i]) < 0)
				goto out;
	}
	result = PyObject_Call(callable, pos, kw);
out:
	Py_DECREF(pos);
	Py_XDECREF(kw);
	return result;
}
#define PyObject_Vectorcall tg_vectorcall

/* tp_call through a type's vectorcall function: positional arguments and
 * keywords laid out as vectorcall has them. Callers that know vectorcall
 * (the interpreter's own calls, 3.9 and later) use the function directly:
 * the types name its offset in __vectorcalloffset__ and set the flag, whose
 * value the limited API of 3.11 does not spell. */
#define TG_TPFLAGS_HAVE_VECTORCALL (1UL << 11)
static PyObject *tg_call(PyObject *self, PyObject *args, PyObject *kwargs, tg_vectorcallfunc fn)
{
	PyObject *small[8], **stack = small, *kwnames = NULL, *result = NULL;
	Py_ssize_t nargs = PyTuple_Size(args), nkw = kwargs ? PyDict_Size(kwargs) : 0;
	if (nargs < 0 || nkw < 0)
		return NULL;
	if (nargs + nkw > (Py_ssize_t)(sizeof small / sizeof small[0])) {
		stack = PyMem_Malloc((size_t)(nargs + nkw) * sizeof(PyObject *));
		if (!stack)
			return PyErr_NoMemory();
	}
	for (Py_ssize_t i = 0; i < nargs; i++)
		stack[i] = PyTuple_GetItem(args, i);
	if (nkw) {
		PyObject *key, *value;
		Py_ssize_t pos = 0, i = 0;
		if (!(kwnames = PyTuple_New(nkw)))
			goto out;
		while (PyDict_Next(kwargs, &pos, &key, &value)) {
			Py_INCREF(key);
			PyTuple_SetItem(kwnames, i, key);
			stack[nargs + i++] = value;
		}
	}
	result = fn(self, stack, (size_t)nargs, kwnames);
out:
	Py_XDECREF(kwnames);
	if (stack != small)
		PyMem_Free(stack);
	return result;
}

#define PyObject_CallOneArg(f, a) PyObject_CallFunctionObjArgs((f), (a), NULL)
#define PyObject_CallMethodNoArgs(o, name) PyObject_CallMethodObjArgs((o), (name), NULL)
#define PyObject_CallMethodOneArg(o, name, a) PyObject_CallMethodObjArgs((o), (name), (a), NULL)
#define PyTuple_GET_SIZE PyTuple_Size
#define PyTuple_GET_ITEM PyTuple_GetItem
#define PyBytes_AS_STRING PyBytes_AsString
#define PyBytes_GET_SIZE PyBytes_Size
#define PyUnicode_GET_LENGTH PyUnicode_GetLength
#define PyUnicode_AsUTF8(o) PyUnicode_AsUTF8AndSize((o), NULL)
#define PyMethod_Check(o) Py_IS_TYPE((o), (PyTypeObject *)method_type)
#define PyCoro_CheckExact(o) Py_IS_TYPE((o), (PyTypeObject *)coro_type)

/* Whether a str is all ASCII (errors: no). */
static int tg_is_ascii(PyObject *o)
{
	Py_ssize_t len;
	const char *s = PyUnicode_AsUTF8AndSize(o, &len);
	if (!s) {
		PyErr_Clear();
		return 0;
	}
	for (Py_ssize_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}
#define PyUnicode_IS_ASCII tg_is_ascii

/* A bound method's __self__, borrowed (the method holds it). */
static PyObject *tg_method_self(PyObject *method)
{
	PyObject *self = PyObject_GetAttr(method, str_self_attr);
	if (!self) {
		PyErr_Clear();
		return NULL;
	}
	Py_DECREF(self);
	return self;
}
#define PyMethod_GET_SELF tg_method_self

/* var.get(): its value, the var's default, or NULL without error. */
static int tg_var_get(PyObject *var, PyObject *unused, PyObject **value)
{
	(void)unused;
	*value = PyObject_CallMethodObjArgs(var, str_var_get, NULL);
	if (*value)
		return 0;
	if (!PyErr_ExceptionMatches(PyExc_LookupError))
		return -1;
	PyErr_Clear();
	return 0;
}
#define PyContextVar_Get tg_var_get
#define PyContextVar_Set(var, v) PyObject_CallMethodObjArgs((var), str_set, (v), NULL)

static int tg_var_reset(PyObject *var, PyObject *token)
{
	PyObject *r = PyObject_CallMethodObjArgs(var, str_reset, token, NULL);
	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}
#define PyContextVar_Reset tg_var_reset
#endif /* Py_LIMITED_API */

/* A heap type's instances hold their type, which the collector must see. */
#ifdef Py_LIMITED_API
#define VISIT_TYPE(self) Py_VISIT(Py_TYPE(self))
/* Like the static types: no instances from Python, no attributes set. */
#define TG_HEAPTYPE_FLAGS \
	(Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION)
#else
#define VISIT_TYPE(self) ((void)0)
#endif

#define MARK_ROUTE 1
#define MARK_EXCEPTION 2
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
typedef uint64_t (*scope_begin_fn)(int, const char *, int);
typedef int (*mark_scope_fn)(int, uint64_t, const char *, size_t);
typedef uint64_t (*scope_adopt_fn)(uintptr_t, uint64_t);
typedef void (*scope_release_fn)(uint64_t);
typedef uint64_t (*scope_current_fn)(void);

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
	scope_begin_fn scope_begin;     /* ABI 4 */
	mark_scope_fn mark_scope;
	scope_adopt_fn scope_adopt;
	scope_release_fn scope_release;
	scope_current_fn scope_current; /* ABI 5 */
} lib;

/* Set by configure(): Python helpers for the rare paths. */
static PyObject *slow_route;  /* slow_route(scope, path0, root0, owner) -> str or None */
static PyObject *report;      /* report(exception): one warning, never raises */
static PyObject *token_var;   /* the ContextVar of the current scope token */

static PyObject *str_type, *str_get, *str_route, *str_root_path, *str_path, *str_client,
	*str_response_start, *str_empty, *str_app, *str_self, *str_transport, *str_get_extra_info,
	*str_socket, *str_fileno, *str_loop, *str_done, *str_add_done_callback, *str_cr_frame, *str_sock_fd,
	*str_fastapi, *str_effective_route_context, *str_original_route, *str_http, *str_timeglass,
	*str_throw, *str_close, *kw_loop;

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
#if defined(Py_LIMITED_API)
	*out = PyObject_GetAttr(o, name);
	if (*out)
		return 1;
	if (!PyErr_ExceptionMatches(PyExc_AttributeError))
		return -1;
	PyErr_Clear();
	return 0;
#elif PY_VERSION_HEX >= 0x030D0000
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
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_LIMITED_API)
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
	if (abi >= 4) {
		lib.scope_begin = (scope_begin_fn)sym("timeglass_scope_begin");
		lib.mark_scope = (mark_scope_fn)sym("timeglass_mark_scope");
		lib.scope_adopt = (scope_adopt_fn)sym("timeglass_scope_adopt");
		lib.scope_release = (scope_release_fn)sym("timeglass_scope_release");
		if (!lib.scope_begin || !lib.mark_scope || !lib.scope_adopt || !lib.scope_release) {
			lib.scope_begin = NULL;
			lib.mark_scope = NULL;
			lib.scope_adopt = NULL;
			lib.scope_release = NULL;
			abi = 3;
		}
	}
	if (abi >= 5) {
		lib.scope_current = (scope_current_fn)sym("timeglass_scope_current");
		if (!lib.scope_current)
			abi = 4;
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

/* Sends a mark for the request of scope token (the library's ABI 4), else
 * for the client host:port. Returns 0 or -1 (not recorded), -2 with an
 * exception. */
static int send_mark(int kind, uint64_t token, const char *host, int port, PyObject *text)
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
	int r = token && lib.mark_scope ? lib.mark_scope(kind, token, data, (size_t)len)
					: lib.mark(kind, host, port, data, (size_t)len);
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
	int r = send_mark(kind, 0, bytes_or_null(host), port, args[3]);
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

/* mark_scope(kind, token, text) -> 0 or -1: a mark for the request of a
 * scope token (falls back to no client when the library predates it). */
static PyObject *sp_mark_scope(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("mark_scope", nargs, 3) || need_lib() < 0)
		return NULL;
	int kind = to_int(args[0]);
	uint64_t token;
	if ((kind == -1 && PyErr_Occurred()) || as_u64(args[1], &token) < 0)
		return NULL;
	if (!PyUnicode_Check(args[2])) {
		PyErr_SetString(PyExc_TypeError, "mark_scope: text must be str");
		return NULL;
	}
	int r = send_mark(kind, token, NULL, 0, args[2]);
	if (r == -2)
		return NULL;
	return PyLong_FromLong(r);
}

/* The fds of the last transports seen: a keep-alive connection's requests
 * share one. The cache holds a reference to each transport, so that an
 * address in it is never another object's. */
#define FD_CACHE 8
static struct {
	PyObject *transport;
	int fd;
} fd_cache[FD_CACHE];
static unsigned fd_cache_next;

/* The fd of an asyncio transport: asyncio's own keep it as _sock_fd, others
 * (uvloop) give their socket. -1 (no exception) if neither. */
static int transport_fd(PyObject *transport)
{
	PyObject *sock = NULL, *fd = NULL;
	int r = -1;
	if (optional_attr(transport, str_sock_fd, &fd) <= 0 || !fd || !PyLong_Check(fd)) {
		Py_CLEAR(fd);
		PyErr_Clear();
		sock = PyObject_CallMethodOneArg(transport, str_get_extra_info, str_socket);
		if (sock && sock != Py_None)
			fd = PyObject_CallMethodNoArgs(sock, str_fileno);
	}
	if (fd && PyLong_Check(fd)) {
		long v = PyLong_AsLong(fd);
		r = v >= 0 && v <= INT_MAX ? (int)v : -1;
	}
	if (PyErr_Occurred())
		PyErr_Clear();
	Py_XDECREF(sock);
	Py_XDECREF(fd);
	return r;
}

/* The socket fd of the connection a request came on, from the server's
 * receive callable: uvicorn's (and gunicorn's UvicornWorker's) is a bound
 * method of an object whose `transport` is the connection's asyncio
 * transport. -1 (no exception) when it cannot be told. */
static int conn_fd(PyObject *receive)
{
	PyObject *transport = NULL;
	PyObject *owner = PyMethod_Check(receive) ? PyMethod_GET_SELF(receive) : NULL;
	if (!owner || optional_attr(owner, str_transport, &transport) <= 0 || !transport ||
	    transport == Py_None) {
		PyErr_Clear();
		Py_XDECREF(transport);
		return -1;
	}
	for (unsigned i = 0; i < FD_CACHE; i++) {
		if (fd_cache[i].transport == transport) {
			Py_DECREF(transport);
			return fd_cache[i].fd;
		}
	}
	int fd = transport_fd(transport);
	unsigned i = fd_cache_next++ % FD_CACHE;
	Py_XSETREF(fd_cache[i].transport, transport); /* takes our reference */
	fd_cache[i].fd = fd;
	return fd;
}

/* conn_fd(receive) -> the request's socket fd, or -1. */
static PyObject *sp_conn_fd(PyObject *self, PyObject *receive)
{
	return PyLong_FromLong(conn_fd(receive));
}

/* scope_begin(fd, host: bytes | None, port) -> token */
static PyObject *sp_scope_begin(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("scope_begin", nargs, 3) || need_lib() < 0)
		return NULL;
	int fd = to_int(args[0]);
	if (fd == -1 && PyErr_Occurred())
		return NULL;
	const char *host = args[1] == Py_None ? NULL : PyBytes_Check(args[1]) ? PyBytes_AS_STRING(args[1]) : NULL;
	if (args[1] != Py_None && !PyBytes_Check(args[1])) {
		PyErr_SetString(PyExc_TypeError, "host must be bytes or None");
		return NULL;
	}
	int port = args[2] == Py_None ? 0 : to_int(args[2]);
	if (port == -1 && PyErr_Occurred())
		return NULL;
	uint64_t token = lib.scope_begin ? lib.scope_begin(fd, host, port) : lib.scope_enter ? lib.scope_enter(host, port) : 0;
	return PyLong_FromUnsignedLongLong(token);
}

/* scope_current() -> the token of the request the calling thread works
 * for (0: none, or a library before ABI 5). */
static PyObject *sp_scope_current(PyObject *self, PyObject *unused)
{
	return PyLong_FromUnsignedLongLong(lib.scope_current ? lib.scope_current() : 0);
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

#ifdef Py_LIMITED_API
/* A heap type made from its spec at init: &RequestType is the pointer. */
#define RequestType (*RequestType_p)
#endif
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
		if (send_mark(MARK_ROUTE, r->token, bytes_or_null(r->host), r->port, route) == -2)
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

/* A Request for scope, entering the request's scope on socket fd (-1:
 * unknown). The scope's root is the innermost Python frame of the caller.
 * New reference, or NULL with an exception. */
static Request *request_new(PyObject *scope, PyObject *send, PyObject *owner, int fd, int set_var)
{
	Request *r = PyObject_GC_New(Request, &RequestType);
	if (!r)
		return NULL;
	r->vectorcall = request_vectorcall;
	r->scope = Py_NewRef(scope);
	r->send = Py_NewRef(send);
	r->owner = NULL;
	r->path0 = r->root0 = r->host = r->ctx_token = NULL;
	r->port = 0;
	r->marked = 0;
	r->token = 0;
	PyObject_GC_Track(r);

	PyObject *own = NULL, *v;
	if (owner != Py_None) {
		r->owner = Py_NewRef(owner);
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
	if (lib.scope_begin) {
		/* The scope's root is the caller's (serve_native's) frame; its
		 * socket ties it to the wire request, whatever client address a
		 * proxy header gave the app. */
		r->token = lib.scope_begin(fd, bytes_or_null(r->host), r->port);
	} else if (lib.scope_enter) {
		r->token = lib.scope_enter(bytes_or_null(r->host), r->port);
	}
	if (r->token && token_var && set_var) {
		PyObject *t = PyLong_FromUnsignedLongLong(r->token);
		if (!t)
			goto fail;
		r->ctx_token = PyContextVar_Set(token_var, t);
		Py_DECREF(t);
		if (!r->ctx_token)
			goto fail;
	}
	return r;
fail:
	Py_XDECREF(own);
	if (r->token) {
		lib.scope_exit(r->token);
		r->token = 0;
	}
	Py_DECREF(r);
	return NULL;
}

/* request(scope, receive, send, owner) -> Request: enters the request's
 * scope. As the marker (marker_vectorcall), it keeps the token in the context
 * variable only for a library without scope_current (ABI < 5): a copy of
 * the request's context outlives the request (the event loop runs the
 * connection's later callbacks in one, and the next request's task starts
 * from it), and that request's token would then be the next one's. */
static PyObject *sp_request(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("request", nargs, 4) || need_lib() < 0)
		return NULL;
	return (PyObject *)request_new(args[0], args[2], args[3], conn_fd(args[1]), lib.scope_current == NULL);
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
	VISIT_TYPE(self);
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
#ifdef Py_LIMITED_API
	PyTypeObject *tp = Py_TYPE(self);
#endif
	PyObject_GC_UnTrack(self);
	request_clear(self);
	PyObject_GC_Del(self);
#ifdef Py_LIMITED_API
	Py_DECREF(tp);
#endif
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

#ifndef Py_LIMITED_API
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
#else
static PyObject *request_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
	return tg_call(self, args, kwargs, request_vectorcall);
}

static PyMemberDef request_members[] = {
	{"__vectorcalloffset__", T_PYSSIZET, offsetof(Request, vectorcall), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot request_slots[] = {
	{Py_tp_call, request_call},
	{Py_tp_members, request_members},
	{Py_tp_dealloc, request_dealloc},
	{Py_tp_traverse, request_traverse},
	{Py_tp_clear, request_clear},
	{Py_tp_methods, request_methods},
	{Py_tp_getset, request_getset},
	{Py_tp_doc, (void *)"One request served over a socket while the library records; "
			    "the application's send."},
	{0, NULL},
};

static PyType_Spec request_spec = {
	.name = "timeglass._speedups.Request",
	.basicsize = sizeof(Request),
	.flags = TG_HEAPTYPE_FLAGS | TG_TPFLAGS_HAVE_VECTORCALL,
	.slots = request_slots,
};
#endif

/* ---- Marker and Serve ------------------------------------------------- */

/* Set by configure_marker(): the Python side of the rare paths. */
static PyObject *mark_exception; /* mark_exception(scope, exc, token): the exception's mark, once */
static PyObject *new_loop;       /* new_loop(): gives a loop seen for the first time the task factory */
static PyObject *running_loop;   /* asyncio._get_running_loop */
static PyObject *last_loop;      /* the loop new_loop() was last called for */
static PyObject *last_holder;    /* what the thread's dict held for it (a strong reference) */
static PyObject *str_running_key; /* "__asyncio_running_event_loop__" */

/* The pending exception, normalized, with its traceback (new reference;
 * the error indicator is cleared). */
static PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_LIMITED_API)
	return PyErr_GetRaisedException();
#else
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyErr_NormalizeException(&type, &value, &tb);
	if (value && tb)
		PyException_SetTraceback(value, tb);
	Py_XDECREF(type);
	Py_XDECREF(tb);
	return value;
#endif
}

/* Raises exc again (steals the reference). */
static void give_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_LIMITED_API)
	PyErr_SetRaisedException(exc);
#else
	PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Serve: the awaitable of one request that the Marker serves: it runs the
 * application's awaitable and, when it is over, sends the route mark if the
 * response never started, the exception mark if the application raised
 * (before ServerErrorMiddleware writes the 500), and ends the request's
 * scope - what middleware.serve_native does, without a coroutine frame of
 * its own. */
typedef struct {
	PyObject_HEAD
	PyObject *it;  /* the application's coroutine (or its __await__ iterator); NULL once over */
	Request *req;
} Serve;

#ifdef Py_LIMITED_API
/* A heap type made from its spec at init: &ServeType is the pointer. */
#define ServeType (*ServeType_p)
#endif
static PyTypeObject ServeType;

/* The request is over: the application returned (exc NULL) or raised exc. */
static void serve_over(Serve *s, PyObject *exc)
{
	Request *r = s->req;
	Py_CLEAR(s->it);
	if (!r)
		return;
	if (!exc || PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
		if (!r->marked)
			mark_route(r);
		if (exc && mark_exception) {
			PyObject *token = PyLong_FromUnsignedLongLong(r->token);
			PyObject *args[3] = {r->scope, exc, token};
			PyObject *ok = token ? PyObject_Vectorcall(mark_exception, args, 3, NULL) : NULL;
			Py_XDECREF(token);
			if (ok)
				Py_DECREF(ok);
			else
				report_error();
		}
	}
	PyObject *ok = request_close((PyObject *)r, NULL);
	if (ok)
		Py_DECREF(ok);
	else
		PyErr_Clear(); /* a reset from another context: the task is gone */
	s->req = NULL;
	Py_DECREF(r);
}

/* What a step of the application gave: a value it yields (NEXT), its
 * return (RETURN, *result its value) or an exception (ERROR). */
static PySendResult serve_step(Serve *s, PySendResult status, PyObject **result)
{
	if (status == PYGEN_NEXT)
		return status;
	if (status == PYGEN_RETURN) {
		serve_over(s, NULL);
		return status;
	}
	PyObject *exc = take_exception();
	if (exc)
		serve_over(s, exc);
	else
		Py_CLEAR(s->it);
	if (exc)
		give_exception(exc);
	return PYGEN_ERROR;
}

static PySendResult serve_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
	Serve *s = (Serve *)self;
	*result = NULL;
	if (!s->it) {
		PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited request");
		return PYGEN_ERROR;
	}
	return serve_step(s, PyIter_Send(s->it, arg, result), result);
}

/* next()/send(): the generator protocol over am_send. */
static PyObject *serve_send_value(PyObject *self, PyObject *arg)
{
	PyObject *result;
	PySendResult status = serve_am_send(self, arg, &result);
	if (status == PYGEN_NEXT)
		return result;
	if (status == PYGEN_RETURN) {
		if (result == Py_None)
			PyErr_SetNone(PyExc_StopIteration);
		else {
			PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
			if (stop) {
				PyErr_SetObject(PyExc_StopIteration, stop);
				Py_DECREF(stop);
			}
		}
		Py_DECREF(result);
	}
	return NULL;
}

static PyObject *serve_iternext(PyObject *self)
{
	return serve_send_value(self, Py_None);
}

/* Whether the pending exception is a StopIteration: the application
 * returned. */
static int stopped(void)
{
	return PyErr_ExceptionMatches(PyExc_StopIteration);
}

/* throw(...): into the application (cancellation, a timeout). */
static PyObject *serve_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Serve *s = (Serve *)self;
	if (!s->it) {
		/* Over already: raise what was thrown, as a finished coroutine does. */
		PyObject *exc = nargs ? args[0] : PyExc_RuntimeError;
		if (PyExceptionClass_Check(exc))
			PyErr_SetObject(exc, nargs > 1 ? args[1] : NULL);
		else
			PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
		return NULL;
	}
	PyObject *meth = PyObject_GetAttr(s->it, str_throw);
	PyObject *result = meth ? PyObject_Vectorcall(meth, args, (size_t)nargs, NULL) : NULL;
	Py_XDECREF(meth);
	if (result)
		return result;
	if (stopped()) {
		PyObject *stop = take_exception();
		serve_over(s, NULL);
		give_exception(stop);
		return NULL;
	}
	serve_step(s, PYGEN_ERROR, &result);
	return NULL;
}

/* close(): the awaiting coroutine is closed; so is the application. */
static PyObject *serve_close(PyObject *self, PyObject *unused)
{
	Serve *s = (Serve *)self;
	if (s->it) {
		PyObject *r = PyObject_CallMethodNoArgs(s->it, str_close);
		if (!r) {
			serve_step(s, PYGEN_ERROR, &r);
			return NULL;
		}
		Py_DECREF(r);
	}
	serve_over(s, NULL);
	Py_RETURN_NONE;
}

static PyObject *serve_await(PyObject *self)
{
	return Py_NewRef(self);
}

static int serve_traverse(PyObject *self, visitproc visit, void *arg)
{
	VISIT_TYPE(self);
	Serve *s = (Serve *)self;
	Py_VISIT(s->it);
	Py_VISIT(s->req);
	return 0;
}

static int serve_clear(PyObject *self)
{
	Serve *s = (Serve *)self;
	Py_CLEAR(s->it);
	if (s->req) {
		Request *r = s->req;
		s->req = NULL;
		if (r->token) {
			lib.scope_exit(r->token);
			r->token = 0;
		}
		Py_DECREF(r);
	}
	return 0;
}

static void serve_dealloc(PyObject *self)
{
#ifdef Py_LIMITED_API
	PyTypeObject *tp = Py_TYPE(self);
#endif
	PyObject_GC_UnTrack(self);
	serve_clear(self);
	PyObject_GC_Del(self);
#ifdef Py_LIMITED_API
	Py_DECREF(tp);
#endif
}

#ifndef Py_LIMITED_API
static PyAsyncMethods serve_async = {
	.am_await = serve_await,
	.am_send = serve_am_send,
};
#endif

static PyMethodDef serve_methods[] = {
	{"send", serve_send_value, METH_O, "Resumes the application with a value."},
	{"throw", (PyCFunction)(void (*)(void))serve_throw, METH_FASTCALL, "Raises an exception in the application."},
	{"close", serve_close, METH_NOARGS, "Closes the application."},
	{NULL, NULL, 0, NULL},
};

#ifndef Py_LIMITED_API
static PyTypeObject ServeType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "timeglass._speedups.Serve",
	.tp_basicsize = sizeof(Serve),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
	.tp_dealloc = serve_dealloc,
	.tp_traverse = serve_traverse,
	.tp_clear = serve_clear,
	.tp_as_async = &serve_async,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = serve_iternext,
	.tp_methods = serve_methods,
	.tp_doc = "The application's awaitable for one request, which finishes the request when it is over.",
};
#else
static PyType_Slot serve_slots[] = {
	{Py_tp_dealloc, serve_dealloc},
	{Py_tp_traverse, serve_traverse},
	{Py_tp_clear, serve_clear},
	{Py_am_await, serve_await},
	{Py_am_send, serve_am_send},
	{Py_tp_iter, PyObject_SelfIter},
	{Py_tp_iternext, serve_iternext},
	{Py_tp_methods, serve_methods},
	{Py_tp_doc, (void *)"The application's awaitable for one request, which finishes the request when it is over."},
	{0, NULL},
};

static PyType_Spec serve_spec = {
	.name = "timeglass._speedups.Serve",
	.basicsize = sizeof(Serve),
	.flags = TG_HEAPTYPE_FLAGS,
	.slots = serve_slots,
};
#endif

/* Marker: what ServerErrorMiddleware wraps its application in under
 * `timeglass run` (see _autopatch.py). The common case - an HTTP request
 * on a socket, not inside another marked application, while the library
 * records - is served here without a Python frame: the request's scope is
 * begun with the caller's (ServerErrorMiddleware's) coroutine frame as its
 * root, the application gets the Request as its send, and the awaitable
 * returned is a Serve. Everything else goes to `fallback`, the Python
 * marker (BootstrapMarker), which does the same through middleware.py. */
typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	PyObject *app;
	PyObject *fallback;
} Marker;

#ifdef Py_LIMITED_API
/* A heap type made from its spec at init: &MarkerType is the pointer. */
#define MarkerType (*MarkerType_p)
#endif
static PyTypeObject MarkerType;

/* Whether this request takes the fast path, and its socket fd. */
static int marker_fast(PyObject *scope, PyObject *receive, int *fd)
{
	if (lib.abi < 4 || !mark_exception || !PyDict_CheckExact(scope) || lib.active() != 1)
		return 0;
	PyObject *kind = PyDict_GetItemWithError(scope, str_type);
	if (!kind || !PyUnicode_Check(kind) || (kind != str_http && PyUnicode_Compare(kind, str_http) != 0))
		return 0;
	PyObject *marked = PyDict_GetItemWithError(scope, str_timeglass);
	if (marked || PyErr_Occurred())
		return 0;
	*fd = conn_fd(receive);
	return *fd >= 0;
}

/* A loop seen for the first time gets the task factory (through new_loop).
 *
 * On CPython 3.11, asyncio._get_running_loop() makes a getpid() system
 * call every time (the running loop is kept with its process id, against
 * forks). The loop is kept in the thread's dict under
 * "__asyncio_running_event_loop__", in an object made anew for each loop
 * that starts running there (a holder on 3.11, the loop itself on 3.12);
 * when that object is the one seen with the last loop, the loop is the
 * same and nothing is called. A strong reference to it keeps its address
 * from being reused by another. Where the thread's dict has no such entry
 * (newer CPythons keep the loop elsewhere, and their
 * _get_running_loop() makes no system call), the loop is asked for. */
static int check_loop(void)
{
	PyObject *d = PyThreadState_GetDict(); /* borrowed */
	PyObject *held = d ? PyDict_GetItemWithError(d, str_running_key) : NULL; /* borrowed */
	if (!held && PyErr_Occurred())
		PyErr_Clear();
	if (held && held == last_holder && last_loop)
		return 0;
	PyObject *loop = PyObject_CallNoArgs(running_loop);
	if (!loop)
		return -1;
	Py_XSETREF(last_holder, Py_XNewRef(held));
	if (loop == last_loop) {
		Py_DECREF(loop);
		return 0;
	}
	Py_XSETREF(last_loop, loop);
	PyObject *r = PyObject_CallNoArgs(new_loop);
	if (!r)
		return -1;
	Py_DECREF(r);
	return 0;
}

static PyObject *marker_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	Marker *m = (Marker *)callable;
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	int fd = -1;
	if (nargs != 3 || kwnames || !marker_fast(args[0], args[1], &fd)) {
		if (PyErr_Occurred())
			return NULL;
		return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
	}
	PyObject *scope = args[0];
	if (check_loop() < 0)
		report_error();
	if (PyDict_SetItem(scope, str_timeglass, Py_True) < 0)
		return NULL;
	/* With ABI 5 the token is not kept in the context variable: whoever
	 * needs it asks the library (scope_current), which finds the scope's
	 * root on the stack. */
	Request *r = request_new(scope, args[2], Py_None, fd, lib.scope_current == NULL);
	if (!r)
		return NULL;
	Serve *s = PyObject_GC_New(Serve, &ServeType);
	if (!s) {
		Py_DECREF(r);
		return NULL;
	}
	s->req = r;
	s->it = NULL;
	PyObject_GC_Track(s);
	PyObject *call[3] = {scope, args[1], (PyObject *)r};
	PyObject *aw = PyObject_Vectorcall(m->app, call, 3, NULL);
	if (aw && !PyCoro_CheckExact(aw)) {
		/* Another awaitable: its iterator. */
		PyTypeObject *t = Py_TYPE(aw);
#ifndef Py_LIMITED_API
		PyObject *it = t->tp_as_async && t->tp_as_async->am_await ? t->tp_as_async->am_await(aw) : NULL;
		if (!it && !PyErr_Occurred())
			PyErr_Format(PyExc_TypeError, "object %.100s can't be used in 'await' expression",
				     t->tp_name);
#else
		unaryfunc am_await = (unaryfunc)PyType_GetSlot(t, Py_am_await);
		PyObject *it = am_await ? am_await(aw) : NULL;
		if (!it && !PyErr_Occurred()) {
			PyObject *name = PyType_GetName(t);
			PyErr_Format(PyExc_TypeError, "object %.100S can't be used in 'await' expression", name);
			Py_XDECREF(name);
		}
#endif
		Py_SETREF(aw, it);
	}
	if (!aw) {
		PyObject *result;
		serve_step(s, PYGEN_ERROR, &result);
		Py_DECREF(s);
		return NULL;
	}
	s->it = aw;
	return (PyObject *)s;
}

static int marker_traverse(PyObject *self, visitproc visit, void *arg)
{
	VISIT_TYPE(self);
	Marker *m = (Marker *)self;
	Py_VISIT(m->app);
	Py_VISIT(m->fallback);
	return 0;
}

static int marker_clear(PyObject *self)
{
	Marker *m = (Marker *)self;
	Py_CLEAR(m->app);
	Py_CLEAR(m->fallback);
	return 0;
}

static void marker_dealloc(PyObject *self)
{
#ifdef Py_LIMITED_API
	PyTypeObject *tp = Py_TYPE(self);
#endif
	PyObject_GC_UnTrack(self);
	marker_clear(self);
	PyObject_GC_Del(self);
#ifdef Py_LIMITED_API
	Py_DECREF(tp);
#endif
}

static PyObject *marker_get_app(PyObject *self, void *closure)
{
	return Py_NewRef(((Marker *)self)->app);
}

static PyObject *marker_get_fallback(PyObject *self, void *closure)
{
	return Py_NewRef(((Marker *)self)->fallback);
}

static PyGetSetDef marker_getset[] = {
	{"app", marker_get_app, NULL, "The application it wraps.", NULL},
	{"fallback", marker_get_fallback, NULL, "The Python marker for the other cases.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

#ifndef Py_LIMITED_API
static PyTypeObject MarkerType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "timeglass._speedups.Marker",
	.tp_basicsize = sizeof(Marker),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(Marker, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_dealloc = marker_dealloc,
	.tp_traverse = marker_traverse,
	.tp_clear = marker_clear,
	.tp_getset = marker_getset,
	.tp_doc = "The bootstrap's ASGI marker around a Starlette application's own.",
};
#else
static PyObject *marker_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
	return tg_call(self, args, kwargs, marker_vectorcall);
}

static PyMemberDef marker_members[] = {
	{"__vectorcalloffset__", T_PYSSIZET, offsetof(Marker, vectorcall), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot marker_slots[] = {
	{Py_tp_call, marker_call},
	{Py_tp_members, marker_members},
	{Py_tp_dealloc, marker_dealloc},
	{Py_tp_traverse, marker_traverse},
	{Py_tp_clear, marker_clear},
	{Py_tp_getset, marker_getset},
	{Py_tp_doc, (void *)"The bootstrap's ASGI marker around a Starlette application's own."},
	{0, NULL},
};

static PyType_Spec marker_spec = {
	.name = "timeglass._speedups.Marker",
	.basicsize = sizeof(Marker),
	.flags = TG_HEAPTYPE_FLAGS | TG_TPFLAGS_HAVE_VECTORCALL,
	.slots = marker_slots,
};
#endif

/* marker(app, fallback) -> Marker */
static PyObject *sp_marker(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("marker", nargs, 2))
		return NULL;
	Marker *m = PyObject_GC_New(Marker, &MarkerType);
	if (!m)
		return NULL;
	m->vectorcall = marker_vectorcall;
	m->app = Py_NewRef(args[0]);
	m->fallback = Py_NewRef(args[1]);
	PyObject_GC_Track(m);
	return (PyObject *)m;
}

/* configure_marker(mark_exception, new_loop, get_running_loop) */
static PyObject *sp_configure_marker(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("configure_marker", nargs, 3))
		return NULL;
	Py_XSETREF(mark_exception, Py_NewRef(args[0]));
	Py_XSETREF(new_loop, Py_NewRef(args[1]));
	Py_XSETREF(running_loop, Py_NewRef(args[2]));
	Py_CLEAR(last_loop);
	Py_CLEAR(last_holder);
	Py_RETURN_NONE;
}

/* ---- TaskFactory ------------------------------------------------------ */

/* Bytes from a coroutine object to the interpreter frame it embeds (3.11+:
 * gen->gi_iframe), measured once on a real coroutine: -1 not yet, 0 not
 * known (then child tasks are not adopted). */
static Py_ssize_t coro_frame_offset = -1;

/* The address of coro's interpreter frame - what the library's frame walk
 * sees while the coroutine runs - or 0. */
static uintptr_t coro_frame(PyObject *coro)
{
	if (coro_frame_offset < 0) {
		coro_frame_offset = 0;
		PyObject *f = PyObject_GetAttr(coro, str_cr_frame);
		if (f && f != Py_None) {
			/* A frame object (struct _frame, 3.11 through 3.15):
			 * PyObject_HEAD, f_back, f_frame (the interpreter frame). */
			uintptr_t iframe;
			memcpy(&iframe, (char *)f + sizeof(PyObject) + sizeof(void *), sizeof iframe);
			uintptr_t base = (uintptr_t)coro;
#ifndef Py_LIMITED_API
			Py_ssize_t size = Py_TYPE(coro)->tp_basicsize;
#else
			PyObject *bs = PyObject_GetAttrString((PyObject *)Py_TYPE(coro), "__basicsize__");
			Py_ssize_t size = bs ? PyLong_AsSsize_t(bs) : 0;
			Py_XDECREF(bs);
#endif
			if (iframe > base && iframe - base < (uintptr_t)size)
				coro_frame_offset = (Py_ssize_t)(iframe - base);
		}
		Py_XDECREF(f);
		PyErr_Clear();
	}
	return coro_frame_offset > 0 ? (uintptr_t)coro + (uintptr_t)coro_frame_offset : 0;
}

/* The done callback of an adopted task: gives its root back. Holds the
 * coroutine until then, so that its address is not reused while it is a
 * root. */
typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	uint64_t handle;
	PyObject *coro;
} Release;

#ifdef Py_LIMITED_API
/* A heap type made from its spec at init: &ReleaseType is the pointer. */
#define ReleaseType (*ReleaseType_p)
#endif
static PyTypeObject ReleaseType;

static PyObject *release_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	Release *r = (Release *)callable;
	(void)args, (void)nargsf, (void)kwnames;
	if (r->handle && lib.scope_release)
		lib.scope_release(r->handle);
	r->handle = 0;
	Py_CLEAR(r->coro);
	Py_RETURN_NONE;
}

static int release_traverse(PyObject *self, visitproc visit, void *arg)
{
	VISIT_TYPE(self);
	Py_VISIT(((Release *)self)->coro);
	return 0;
}

static int release_clear(PyObject *self)
{
	Release *r = (Release *)self;
	/* Collected with its task, never called: the coroutine goes now. */
	if (r->handle && lib.scope_release)
		lib.scope_release(r->handle);
	r->handle = 0;
	Py_CLEAR(r->coro);
	return 0;
}

static void release_dealloc(PyObject *self)
{
#ifdef Py_LIMITED_API
	PyTypeObject *tp = Py_TYPE(self);
#endif
	PyObject_GC_UnTrack(self);
	release_clear(self);
	PyObject_GC_Del(self);
#ifdef Py_LIMITED_API
	Py_DECREF(tp);
#endif
}

#ifndef Py_LIMITED_API
static PyTypeObject ReleaseType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "timeglass._speedups.Release",
	.tp_basicsize = sizeof(Release),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(Release, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_dealloc = release_dealloc,
	.tp_traverse = release_traverse,
	.tp_clear = release_clear,
	.tp_doc = "Done callback of a task adopted by a request's scope.",
};
#else
static PyObject *release_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
	return tg_call(self, args, kwargs, release_vectorcall);
}

static PyMemberDef release_members[] = {
	{"__vectorcalloffset__", T_PYSSIZET, offsetof(Release, vectorcall), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot release_slots[] = {
	{Py_tp_call, release_call},
	{Py_tp_members, release_members},
	{Py_tp_dealloc, release_dealloc},
	{Py_tp_traverse, release_traverse},
	{Py_tp_clear, release_clear},
	{Py_tp_doc, (void *)"Done callback of a task adopted by a request's scope."},
	{0, NULL},
};

static PyType_Spec release_spec = {
	.name = "timeglass._speedups.Release",
	.basicsize = sizeof(Release),
	.flags = TG_HEAPTYPE_FLAGS | TG_TPFLAGS_HAVE_VECTORCALL,
	.slots = release_slots,
};
#endif

/* Makes the task running coro belong to the current request scope, if any. */
static int adopt(PyObject *task, PyObject *coro)
{
	if (!lib.scope_adopt || !token_var || !PyCoro_CheckExact(coro))
		return 0;
	PyObject *value = NULL;
	if (PyContextVar_Get(token_var, NULL, &value) < 0)
		return -1;
	uint64_t token = 0;
	int rc = value ? as_u64(value, &token) : 0;
	Py_XDECREF(value);
	if (rc == 0 && !token && lib.scope_current)
		token = lib.scope_current();
	if (rc < 0 || !token)
		return rc;
	PyObject *done = PyObject_CallMethodNoArgs(task, str_done);
	if (!done)
		return -1;
	int finished = PyObject_IsTrue(done);
	Py_DECREF(done);
	if (finished)
		return finished < 0 ? -1 : 0; /* an eager task that already ran */
	uintptr_t frame = coro_frame(coro);
	uint64_t handle = frame ? lib.scope_adopt(frame, token) : 0;
	if (!handle)
		return 0;
	Release *r = PyObject_GC_New(Release, &ReleaseType);
	if (!r) {
		lib.scope_release(handle);
		return -1;
	}
	r->vectorcall = release_vectorcall;
	r->handle = handle;
	r->coro = Py_NewRef(coro);
	PyObject_GC_Track(r);
	PyObject *ok = PyObject_CallMethodOneArg(task, str_add_done_callback, (PyObject *)r);
	Py_DECREF(r);
	if (!ok)
		return -1;
	Py_DECREF(ok);
	return 0;
}

/* The task factory: factory(loop, coro, **kwargs) -> the task that `inner`
 * (the loop's previous factory, or None: task_type(coro, loop=loop,
 * **kwargs)) makes, adopted by the current request scope. */
typedef struct {
	PyObject_HEAD
	vectorcallfunc vectorcall;
	PyObject *inner;     /* None or a callable */
	PyObject *task_type; /* asyncio.Task */
} TaskFactory;

#ifdef Py_LIMITED_API
/* A heap type made from its spec at init: &TaskFactoryType is the pointer. */
#define TaskFactoryType (*TaskFactoryType_p)
#endif
static PyTypeObject TaskFactoryType;

static PyObject *factory_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
	TaskFactory *f = (TaskFactory *)callable;
	Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "task factory takes (loop, coro)");
		return NULL;
	}
	PyObject *task;
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	if (f->inner != Py_None) {
		task = PyObject_Vectorcall(f->inner, args, nargsf, kwnames);
	} else if (!nkw) {
		/* task_type(coro, loop=loop) */
		PyObject *call[2] = {args[1], args[0]};
		task = PyObject_Vectorcall(f->task_type, call, 1, kw_loop);
	} else {
		/* task_type(coro, loop=loop, **kwargs) */
		PyObject *kw = PyDict_New();
		if (!kw)
			return NULL;
		int bad = PyDict_SetItem(kw, str_loop, args[0]) < 0;
		for (Py_ssize_t i = 0; i < nkw && !bad; i++)
			bad = PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0;
		PyObject *pos = bad ? NULL : PyTuple_Pack(1, args[1]);
		task = pos ? PyObject_Call(f->task_type, pos, kw) : NULL;
		Py_XDECREF(pos);
		Py_DECREF(kw);
	}
	if (task && adopt(task, args[1]) < 0)
		report_error(); /* the task stands; only its attribution is lost */
	return task;
}

static int factory_traverse(PyObject *self, visitproc visit, void *arg)
{
	VISIT_TYPE(self);
	TaskFactory *f = (TaskFactory *)self;
	Py_VISIT(f->inner);
	Py_VISIT(f->task_type);
	return 0;
}

static int factory_clear(PyObject *self)
{
	TaskFactory *f = (TaskFactory *)self;
	Py_CLEAR(f->inner);
	Py_CLEAR(f->task_type);
	return 0;
}

static void factory_dealloc(PyObject *self)
{
#ifdef Py_LIMITED_API
	PyTypeObject *tp = Py_TYPE(self);
#endif
	PyObject_GC_UnTrack(self);
	factory_clear(self);
	PyObject_GC_Del(self);
#ifdef Py_LIMITED_API
	Py_DECREF(tp);
#endif
}

static PyObject *factory_get_inner(PyObject *self, void *closure)
{
	return Py_NewRef(((TaskFactory *)self)->inner);
}

static PyGetSetDef factory_getset[] = {
	{"inner", factory_get_inner, NULL, "The factory this one wraps, or None.", NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

#ifndef Py_LIMITED_API
static PyTypeObject TaskFactoryType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "timeglass._speedups.TaskFactory",
	.tp_basicsize = sizeof(TaskFactory),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
	.tp_vectorcall_offset = offsetof(TaskFactory, vectorcall),
	.tp_call = PyVectorcall_Call,
	.tp_dealloc = factory_dealloc,
	.tp_traverse = factory_traverse,
	.tp_clear = factory_clear,
	.tp_getset = factory_getset,
	.tp_doc = "An event loop's task factory: tasks started inside a request belong to it.",
};
#else
static PyObject *factory_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
	return tg_call(self, args, kwargs, factory_vectorcall);
}

static PyMemberDef factory_members[] = {
	{"__vectorcalloffset__", T_PYSSIZET, offsetof(TaskFactory, vectorcall), READONLY, NULL},
	{NULL, 0, 0, 0, NULL},
};

static PyType_Slot factory_slots[] = {
	{Py_tp_call, factory_call},
	{Py_tp_members, factory_members},
	{Py_tp_dealloc, factory_dealloc},
	{Py_tp_traverse, factory_traverse},
	{Py_tp_clear, factory_clear},
	{Py_tp_getset, factory_getset},
	{Py_tp_doc, (void *)"An event loop's task factory: tasks started inside a request belong to it."},
	{0, NULL},
};

static PyType_Spec factory_spec = {
	.name = "timeglass._speedups.TaskFactory",
	.basicsize = sizeof(TaskFactory),
	.flags = TG_HEAPTYPE_FLAGS | TG_TPFLAGS_HAVE_VECTORCALL,
	.slots = factory_slots,
};
#endif

/* task_factory(inner, task_type) -> TaskFactory */
static PyObject *sp_task_factory(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (!nargs_ok("task_factory", nargs, 2))
		return NULL;
	TaskFactory *f = PyObject_GC_New(TaskFactory, &TaskFactoryType);
	if (!f)
		return NULL;
	f->vectorcall = factory_vectorcall;
	f->inner = Py_NewRef(args[0]);
	f->task_type = Py_NewRef(args[1]);
	PyObject_GC_Track(f);
	return (PyObject *)f;
}

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
	 "request(scope, receive, send, owner) -> Request"},
	{"mark_scope", (PyCFunction)(void (*)(void))sp_mark_scope, METH_FASTCALL,
	 "mark_scope(kind, token, text)"},
	{"scope_begin", (PyCFunction)(void (*)(void))sp_scope_begin, METH_FASTCALL,
	 "scope_begin(fd, host_bytes, port) -> token"},
	{"scope_current", sp_scope_current, METH_NOARGS, "scope_current() -> token (0: none)"},
	{"conn_fd", sp_conn_fd, METH_O, "conn_fd(receive) -> the request's socket fd, or -1"},
	{"task_factory", (PyCFunction)(void (*)(void))sp_task_factory, METH_FASTCALL,
	 "task_factory(inner, task_type) -> TaskFactory"},
	{"marker", (PyCFunction)(void (*)(void))sp_marker, METH_FASTCALL,
	 "marker(app, fallback) -> Marker: the bootstrap's marker around app"},
	{"configure_marker", (PyCFunction)(void (*)(void))sp_configure_marker, METH_FASTCALL,
	 "configure_marker(mark_exception, new_loop, get_running_loop)"},
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
		{&str_self, "__self__"}, {&str_transport, "transport"},
		{&str_get_extra_info, "get_extra_info"}, {&str_socket, "socket"},
		{&str_fileno, "fileno"}, {&str_loop, "loop"},
		{&str_done, "done"},     {&str_add_done_callback, "add_done_callback"},
		{&str_cr_frame, "cr_frame"}, {&str_sock_fd, "_sock_fd"},
		{&str_fastapi, "fastapi"},
		{&str_effective_route_context, "effective_route_context"},
		{&str_original_route, "original_route"},
		{&str_http, "http"},     {&str_timeglass, "timeglass"},
		{&str_throw, "throw"},   {&str_close, "close"},
		{&str_running_key, "__asyncio_running_event_loop__"},
	};
	for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
		if (!*strings[i].slot && !(*strings[i].slot = PyUnicode_InternFromString(strings[i].text)))
			return NULL;
	if (!kw_loop && !(kw_loop = PyTuple_Pack(1, str_loop)))
		return NULL;
#ifndef Py_LIMITED_API
	if (PyType_Ready(&RequestType) < 0 || PyType_Ready(&ReleaseType) < 0 ||
	    PyType_Ready(&TaskFactoryType) < 0 || PyType_Ready(&ServeType) < 0 ||
	    PyType_Ready(&MarkerType) < 0)
		return NULL;
#else
	struct {
		PyObject **slot;
		const char *text;
	} limited_strings[] = {
		{&str_var_get, "get"}, {&str_set, "set"}, {&str_reset, "reset"}, {&str_self_attr, "__self__"},
	};
	for (size_t i = 0; i < sizeof limited_strings / sizeof limited_strings[0]; i++)
		if (!*limited_strings[i].slot &&
		    !(*limited_strings[i].slot = PyUnicode_InternFromString(limited_strings[i].text)))
			return NULL;
	if (Py_Version >= 0x030C0000)
		tg_real_vectorcall = (PyObject * (*)(PyObject *, PyObject *const *, size_t, PyObject *))
			dlsym(RTLD_DEFAULT, "PyObject_Vectorcall");
	if (!method_type || !coro_type) {
		PyObject *types = PyImport_ImportModule("types");
		if (!types)
			return NULL;
		Py_XSETREF(method_type, PyObject_GetAttrString(types, "MethodType"));
		Py_XSETREF(coro_type, PyObject_GetAttrString(types, "CoroutineType"));
		Py_DECREF(types);
		if (!method_type || !coro_type)
			return NULL;
	}
	struct {
		PyTypeObject **type;
		PyType_Spec *spec;
	} heap_types[] = {
		{&RequestType_p, &request_spec}, {&ReleaseType_p, &release_spec},
		{&TaskFactoryType_p, &factory_spec}, {&ServeType_p, &serve_spec},
		{&MarkerType_p, &marker_spec},
	};
	for (size_t i = 0; i < sizeof heap_types / sizeof heap_types[0]; i++)
		if (!*heap_types[i].type &&
		    !(*heap_types[i].type = (PyTypeObject *)PyType_FromSpec(heap_types[i].spec)))
			return NULL;
#endif
	PyObject *m = PyModule_Create(&module);
	if (!m)
		return NULL;
	if (PyModule_AddObjectRef(m, "Request", (PyObject *)&RequestType) < 0 ||
	    PyModule_AddObjectRef(m, "TaskFactory", (PyObject *)&TaskFactoryType) < 0 ||
	    PyModule_AddObjectRef(m, "Marker", (PyObject *)&MarkerType) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
