/*
 * pyframes.c - reading CPython's frames from inside the process, without the
 * GIL and without ever faulting (pyframes.h).
 *
 * Every read of interpreter memory goes through process_vm_readv() on our
 * own pid: a pointer that races with the interpreter (a frame popped, an
 * object freed, an arena unmapped) makes the read fail with EFAULT instead of
 * crashing the app. Layouts come from pyversions.c (TG_PYO). The interpreter
 * is found by its exported symbols _PyRuntime and Py_Version.
 *
 * Workloads: the sampler thread walks every thread ~1000 times a second
 * through a page-caching reader; the SQL taps and the request marker walk the
 * calling thread's own chain once per query or request through a small
 * reader on the stack.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/lines.h"
#include "pyframes.h"
#include "pyversions.h"
#include "tg_preload.h"

#define PAGE 4096u
#define MAX_DEPTH 1024 /* frames walked at most per thread */
#define TS_INTERP 16   /* PyThreadState.interp, after prev and next in every version */

static int py_state;        /* 0 unknown, 1 supported, -1 not a supported CPython */
static uintptr_t runtime;   /* &_PyRuntime */
/* _PyRuntime's own bytes: static storage of the interpreter's executable or
 * library, mapped as long as the process lives, so read with plain loads
 * (it holds the main interpreter, and from 3.12 the main thread's state:
 * two or three system calls fewer per sampler pass). */
static uintptr_t static_lo, static_hi;
/* The main thread's stack as mapped at start-up: the kernel grows it down
 * and never unmaps it, so it is read with plain loads too (3.11 and 3.12
 * keep the current frame pointer in a _PyCFrame there: one system call
 * fewer per pass). */
static uintptr_t stack_lo, stack_hi;

static void find_main_stack(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		size_t n = strlen(line);
		if (n > 8 && strcmp(line + n - 8, "[stack]\n") == 0 && sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
		    lo < hi) {
			stack_lo = lo;
			stack_hi = hi;
			break;
		}
	}
	fclose(f);
}

static inline int always_mapped(uintptr_t addr, size_t len)
{
	return (addr >= static_lo && addr < static_hi && len <= static_hi - addr) ||
	       (addr >= stack_lo && addr < stack_hi && len <= stack_hi - addr);
}
/* Copies len bytes that another thread may be changing (its stack, the
 * interpreter's statics): plain loads, each of which may see an old or a new
 * value, which the readers validate. Not through memcpy: under AddressSanitizer
 * the memcpy interceptor checks the bytes against the other thread's stack
 * poisoning, which changes under it as its functions enter and return. */
__attribute__((no_sanitize_address)) static void racy_copy(void *dst, uintptr_t addr, size_t len)
{
	uint8_t *d = dst;
	if (((addr | (uintptr_t)d) & 7) == 0) {
		for (; len >= 8; len -= 8, addr += 8, d += 8) {
			uint64_t v = *(const volatile uint64_t *)addr;
			__builtin_memcpy(d, &v, 8);
		}
	}
	for (; len; len--, addr++, d++)
		*d = *(const volatile uint8_t *)addr;
}

static uintptr_t code_type; /* &PyCode_Type */
static pid_t self_pid;
/* PyGILState_GetThisThreadState: the calling thread's own state, from
 * thread-specific storage (no lock, no GIL needed). */
static void *(*this_thread_state)(void);

int tg_py_safe_read(void *dst, uintptr_t addr, size_t len)
{
	if (addr < 4096 || len == 0)
		return len == 0 ? 0 : -1;
	pid_t pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
	if (!pid) {
		pid = getpid();
		__atomic_store_n(&self_pid, pid, __ATOMIC_RELAXED);
	}
	struct iovec local = {.iov_base = dst, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)addr, .iov_len = len};
	int saved = errno;
	ssize_t r = syscall(SYS_process_vm_readv, pid, &local, 1UL, &remote, 1UL, 0UL);
	errno = saved;
	return r == (ssize_t)len ? 0 : -1;
}

static int plain_read(void *dst, uintptr_t addr, size_t len)
{
	return tg_py_safe_read(dst, addr, len);
}

void tg_py_rd_reset(struct tg_py_rd *rd)
{
	memset(rd->tags, 0, rd->nslots * sizeof rd->tags[0]);
	rd->syscalls = 0;
}

/* The cached copy of the page at page (page-aligned), or NULL. */
static const uint8_t *rd_page(struct tg_py_rd *rd, uintptr_t page)
{
	unsigned slot = (unsigned)(page / PAGE) & (rd->nslots - 1);
	uint8_t *buf = rd->pages + (size_t)slot * PAGE;
	if (rd->tags[slot] == page + 1)
		return buf;
	rd->syscalls++;
	if (tg_py_safe_read(buf, page, PAGE) < 0) {
		rd->tags[slot] = 0;
		return NULL;
	}
	rd->tags[slot] = page + 1;
	return buf;
}

int tg_py_rd_read(struct tg_py_rd *rd, void *dst, uintptr_t addr, size_t len)
{
	if (addr < 4096)
		return -1;
	if (rd && rd->direct) {
		memcpy(dst, (const void *)addr, len);
		return 0;
	}
	if (always_mapped(addr, len)) {
		racy_copy(dst, addr, len);
		return 0;
	}
	if (!rd || rd->nslots == 0 || len > PAGE) {
		if (rd)
			rd->syscalls++;
		return tg_py_safe_read(dst, addr, len);
	}
	uint8_t *out = dst;
	while (len) {
		uintptr_t page = addr & ~(uintptr_t)(PAGE - 1);
		size_t off = addr - page, n = PAGE - off;
		if (n > len)
			n = len;
		const uint8_t *p = rd_page(rd, page);
		if (!p)
			return -1;
		memcpy(out, p + off, n);
		out += n;
		addr += n;
		len -= n;
	}
	return 0;
}

/* A pointer or a 32-bit field: with the caller's own frames (rd->direct) a
 * load of known size, not a call of memcpy through tg_py_rd_read(). */
static int rd_ptr(struct tg_py_rd *rd, uintptr_t addr, uintptr_t *v)
{
	if (rd && rd->direct && addr >= 4096) {
		memcpy(v, (const void *)addr, sizeof *v);
		return 0;
	}
	return tg_py_rd_read(rd, v, addr, sizeof *v);
}

static int rd_i32(struct tg_py_rd *rd, uintptr_t addr, int32_t *v)
{
	if (rd && rd->direct && addr >= 4096) {
		memcpy(v, (const void *)addr, sizeof *v);
		return 0;
	}
	return tg_py_rd_read(rd, v, addr, sizeof *v);
}

int tg_py_init(void)
{
	int st = __atomic_load_n(&py_state, __ATOMIC_ACQUIRE);
	if (st)
		return st > 0 ? 0 : -1;
	st = -1;
	void *rt = dlsym(RTLD_DEFAULT, "_PyRuntime");
	const unsigned long *ver = dlsym(RTLD_DEFAULT, "Py_Version");
	void *ct = dlsym(RTLD_DEFAULT, "PyCode_Type");
	unsigned long hex = 0;
	if (rt && ver && ct && tg_py_safe_read(&hex, (uintptr_t)ver, sizeof hex) == 0 &&
	    tg_pyoff_select((uintptr_t)rt, (uint32_t)hex, plain_read) == 0) {
		runtime = (uintptr_t)rt;
		code_type = (uintptr_t)ct;
		this_thread_state = (void *(*)(void))dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
		Dl_info info;
		const ElfW(Sym) *sym = NULL;
		if (dladdr1(rt, &info, (void **)&sym, RTLD_DL_SYMENT) && sym && info.dli_saddr == rt &&
		    sym->st_size >= 4096 && sym->st_size < (64u << 20)) {
			static_lo = runtime;
			static_hi = runtime + sym->st_size;
		}
		find_main_stack();
		st = 1;
	}
	__atomic_store_n(&py_state, st, __ATOMIC_RELEASE);
	return st > 0 ? 0 : -1;
}

uint32_t tg_py_version(void)
{
	return tg_py_init() == 0 ? TG_PYO(hexversion) : 0;
}

/* The main interpreter, or 0 while there is none or it is finalizing. */
static uintptr_t main_interp(struct tg_py_rd *rd)
{
	uintptr_t interp = 0, fin = 0;
	if (rd_ptr(rd, runtime + TG_PYO(rt_interp_head), &interp) < 0 || !interp)
		return 0;
	if (rd_ptr(rd, runtime + TG_PYO(rt_finalizing), &fin) < 0 || fin)
		return 0;
	/* The main interpreter is the last of the list (subinterpreters are
	 * prepended). */
	for (int i = 0; i < 64; i++) {
		uintptr_t next = 0;
		if (rd_ptr(rd, interp + TG_PYO(is_next), &next) < 0)
			return 0;
		if (!next)
			return interp;
		interp = next;
	}
	return 0;
}

int tg_py_threads(struct tg_py_rd *rd, struct tg_py_thread *out, int max)
{
	if (tg_py_init() < 0)
		return -1;
	uintptr_t interp = main_interp(rd);
	if (!interp)
		return -1;
	uintptr_t gil = 0;
	if (TG_PYO(rt_gil_holder) != TG_PYOFF_NONE &&
	    rd_ptr(rd, runtime + TG_PYO(rt_gil_holder), &gil) < 0)
		gil = 0;
	uintptr_t ts = 0;
	if (rd_ptr(rd, interp + TG_PYO(is_threads_head), &ts) < 0)
		return -1;
	int n = 0;
	for (int guard = 0; ts && n < max && guard < 4096; guard++) {
		uint64_t tid = 0;
		uintptr_t owner = 0;
		if (tg_py_rd_read(rd, &tid, ts + TG_PYO(ts_native_tid), sizeof tid) < 0 ||
		    rd_ptr(rd, ts + TS_INTERP, &owner) < 0)
			return n; /* list changed under us: keep what we have */
		if (owner != interp)
			return n ? n : -1; /* freed under us, or a layout that does not fit */
		out[n].tstate = ts;
		out[n].tid = (uint32_t)tid;
		out[n].holds_gil = TG_PYO(rt_gil_holder) == TG_PYOFF_NONE ? -1 : gil == ts;
		int32_t held = 0;
		if (TG_PYO(ts_holds_gil) != TG_PYOFF_NONE &&
		    tg_py_rd_read(rd, &held, ts + TG_PYO(ts_holds_gil), sizeof held) == 0)
			out[n].holds_gil = held != 0;
		n++;
		if (rd_ptr(rd, ts + TG_PYO(ts_next), &ts) < 0)
			break;
	}
	return n;
}

/* The current (innermost) frame of tstate, 0 if none, -1 on a bad read. */
static int current_frame(struct tg_py_rd *rd, uintptr_t ts, uintptr_t *frame)
{
	uintptr_t base = ts;
	if (TG_PYO(ts_cframe) != TG_PYOFF_NONE) {
		if (rd_ptr(rd, ts + TG_PYO(ts_cframe), &base) < 0)
			return -1;
		if (!base) {
			*frame = 0;
			return 0;
		}
	}
	return rd_ptr(rd, base + TG_PYO(ts_frame), frame);
}

/* Reads the fields of a frame we need in one go (they lie within 80 bytes). */
struct raw_frame {
	uintptr_t code, previous, instr;
	int owner;
	int is_entry; /* 3.11 only */
};

static int read_frame(struct tg_py_rd *rd, uintptr_t f, struct raw_frame *rf)
{
	uint8_t copy[96];
	const uint8_t *b = copy;
	if (rd && rd->direct) {
		/* The calling thread's own live frame: its fields in place,
		 * not copied (the SQL taps walk a dozen frames per query). */
		if (f < 4096)
			return -1;
		b = (const uint8_t *)f;
	} else if (tg_py_rd_read(rd, copy, f, sizeof copy) < 0) {
		return -1;
	}
	memcpy(&rf->code, b + TG_PYO(fr_code), sizeof rf->code);
	memcpy(&rf->previous, b + TG_PYO(fr_previous), sizeof rf->previous);
	memcpy(&rf->instr, b + TG_PYO(fr_instr), sizeof rf->instr);
	rf->owner = (signed char)b[TG_PYO(fr_owner)];
	rf->is_entry = TG_PYO(fr_is_entry) != TG_PYOFF_NONE && b[TG_PYO(fr_is_entry)];
	rf->code &= ~(uintptr_t)TG_PYO(code_tag_mask);
	return 0;
}

static int is_code(struct tg_py_rd *rd, uintptr_t obj)
{
	uintptr_t type = 0;
	return obj && rd_ptr(rd, obj + TG_PYO(ob_type), &type) == 0 && type == code_type;
}

int tg_py_walk(struct tg_py_rd *rd, uintptr_t ts, struct tg_py_frame *out, int max, int *truncated)
{
	return tg_py_walk_ex(rd, ts, out, max, truncated, 1);
}

int tg_py_walk_ex(struct tg_py_rd *rd, uintptr_t ts, struct tg_py_frame *out, int max, int *truncated,
		  int check_code)
{
	uintptr_t at = 0;
	return tg_py_walk_more(rd, ts, &at, out, 0, max, truncated, check_code);
}

int tg_py_walk_more(struct tg_py_rd *rd, uintptr_t ts, uintptr_t *at, struct tg_py_frame *out, int n, int max,
		    int *truncated, int check_code)
{
	*truncated = 0;
	if (tg_py_init() < 0)
		return 0;
	uintptr_t f = *at;
	if (!n && current_frame(rd, ts, &f) < 0)
		return -1;
	for (int steps = 0; f; steps++) {
		if (steps >= 4 * MAX_DEPTH)
			return -1; /* a loop, or garbage */
		struct raw_frame rf;
		if ((f & 7) || read_frame(rd, f, &rf) < 0)
			return -1;
		if (rf.owner == TG_PYO(own_skip1) || rf.owner == TG_PYO(own_skip2) || !rf.code) {
			if (n)
				out[n - 1].entry = 1; /* the eval loop call it opened starts there */
			f = rf.previous;
			continue; /* shim frame owned by C */
		}
		if (n >= max) {
			*truncated = 1;
			*at = f;
			break;
		}
		if (check_code && !is_code(rd, rf.code))
			return -1;
		out[n].frame = f;
		out[n].code = rf.code;
		out[n].lasti = tg_py_lasti(rf.code, rf.instr, TG_PYO(co_code));
		out[n].entry = rf.is_entry || !rf.previous;
		n++;
		f = rf.previous;
	}
	return n;
}

int tg_py_own_begin(uintptr_t tstate, struct tg_py_own *w)
{
	if (tg_py_init() < 0 || !tstate)
		return -1;
	struct tg_py_rd rd = {.direct = 1}; /* plain loads: no pages to cache */
	uintptr_t f;
	if (current_frame(&rd, tstate, &f) < 0)
		return -1;
	*w = (struct tg_py_own){
		.f = f,
		.off_code = TG_PYO(fr_code),
		.off_prev = TG_PYO(fr_previous),
		.off_instr = TG_PYO(fr_instr),
		.off_owner = TG_PYO(fr_owner),
		.off_co_code = TG_PYO(co_code),
		.skip1 = TG_PYO(own_skip1),
		.skip2 = TG_PYO(own_skip2),
		.tag_mask = (uintptr_t)TG_PYO(code_tag_mask),
	};
	return 0;
}

int tg_py_code_ident(struct tg_py_rd *rd, uintptr_t code, uint64_t *ident)
{
	uintptr_t f[4];
	int32_t first = 0;
	if (!is_code(rd, code) || rd_ptr(rd, code + TG_PYO(co_filename), &f[0]) < 0 ||
	    rd_ptr(rd, code + TG_PYO(co_qualname), &f[1]) < 0 ||
	    rd_ptr(rd, code + TG_PYO(co_linetable), &f[2]) < 0 ||
	    rd_ptr(rd, code + TG_PYO(co_name), &f[3]) < 0 ||
	    rd_i32(rd, code + TG_PYO(co_firstlineno), &first) < 0)
		return -1;
	/* A word at a time: the fields are pointers and a line number. */
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < 4; i++)
		h = (h ^ f[i]) * 0x9e3779b97f4a7c15ull, h ^= h >> 29;
	h = (h ^ (uint32_t)first) * 0x9e3779b97f4a7c15ull;
	h ^= h >> 32;
	*ident = h ? h : 1;
	return 0;
}

/* Appends code point cp to out as UTF-8 if it fits. */
static size_t put_utf8(char *out, size_t pos, size_t cap, uint32_t cp)
{
	char b[4];
	size_t n;
	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 63));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 63));
		b[2] = (char)(0x80 | (cp & 63));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 63));
		b[2] = (char)(0x80 | ((cp >> 6) & 63));
		b[3] = (char)(0x80 | (cp & 63));
		n = 4;
	}
	if (pos + n >= cap)
		return pos;
	memcpy(out + pos, b, n);
	return pos + n;
}

/* Copies the str object at obj to out as UTF-8, capped at cap - 1 bytes and
 * NUL-terminated. Only compact strings (all that code objects hold) are
 * read. Returns the length, or -1. */
static int read_str(struct tg_py_rd *rd, uintptr_t obj, char *out, size_t cap)
{
	int64_t length = 0;
	uint32_t state = 0;
	out[0] = '\0';
	if (!obj || tg_py_rd_read(rd, &length, obj + TG_PYO(u_length), sizeof length) < 0 ||
	    tg_py_rd_read(rd, &state, obj + TG_PYO(u_state), sizeof state) < 0 || length < 0)
		return -1;
	unsigned kind = (state >> 2) & 7, compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
	if (!compact || (kind != 1 && kind != 2 && kind != 4))
		return -1;
	uintptr_t data = obj + (ascii ? TG_PYO(u_ascii_data) : TG_PYO(u_compact_data));
	size_t want = (size_t)length < cap - 1 ? (size_t)length : cap - 1;
	uint8_t buf[2048];
	if (want * kind > sizeof buf)
		want = sizeof buf / kind;
	if (want && tg_py_rd_read(rd, buf, data, want * kind) < 0)
		return -1;
	/* The object may be freed and its memory reused while another thread
	 * is read: a string whose characters its own kind cannot hold (a byte
	 * above 0x7f in an ASCII string, a code point above U+10FFFF) is not
	 * a live str, and is refused. Lone surrogates are valid str content
	 * (file names decoded with surrogateescape) but not UTF-8: U+FFFD. */
	size_t pos = 0;
	for (size_t i = 0; i < want; i++) {
		uint32_t cp;
		if (kind == 1)
			cp = buf[i];
		else if (kind == 2)
			cp = (uint32_t)buf[2 * i] | (uint32_t)buf[2 * i + 1] << 8;
		else
			memcpy(&cp, buf + 4 * i, 4);
		if ((ascii && cp > 0x7f) || cp > 0x10ffff) {
			out[0] = '\0';
			return -1;
		}
		if (cp >= 0xd800 && cp <= 0xdfff)
			cp = 0xfffd;
		pos = put_utf8(out, pos, cap, cp);
	}
	out[pos] = '\0';
	return (int)pos;
}

int tg_py_code_info(struct tg_py_rd *rd, uintptr_t code, struct tg_py_code_info *ci,
		    uint8_t *table, size_t table_cap)
{
	uintptr_t qn = 0, fn = 0, lt = 0;
	ci->table_len = ci->table_full_len = 0;
	if (!is_code(rd, code) || rd_ptr(rd, code + TG_PYO(co_qualname), &qn) < 0 ||
	    rd_ptr(rd, code + TG_PYO(co_filename), &fn) < 0 ||
	    rd_ptr(rd, code + TG_PYO(co_linetable), &lt) < 0 ||
	    tg_py_rd_read(rd, &ci->firstlineno, code + TG_PYO(co_firstlineno), sizeof ci->firstlineno) < 0)
		return -1;
	if (read_str(rd, qn, ci->qualname, sizeof ci->qualname) < 0 ||
	    read_str(rd, fn, ci->filename, sizeof ci->filename) < 0)
		return -1;
	int64_t size = 0;
	if (lt && tg_py_rd_read(rd, &size, lt + TG_PYO(bytes_size), sizeof size) == 0 && size > 0) {
		size_t n = (size_t)size < table_cap ? (size_t)size : table_cap;
		if (n && tg_py_rd_read(rd, table, lt + TG_PYO(bytes_sval), n) == 0) {
			ci->table_len = (uint32_t)n;
			ci->table_full_len = (uint32_t)size;
		}
	}
	return 0;
}

/* ---- the calling thread ------------------------------------------------ */

static TG_TLS uintptr_t my_tstate; /* cached PyThreadState of this thread */
static TG_TLS uint32_t my_tstate_tid;

void tg_py_after_fork(void)
{
	__atomic_store_n(&self_pid, 0, __ATOMIC_RELAXED);
	my_tstate = 0;
	my_tstate_tid = 0;
}

/* Kernel id of the calling thread, cached per thread (and per process: a
 * fork child's thread has a new id). */
static uint32_t own_tid(void)
{
	static TG_TLS uint32_t tid;
	static TG_TLS pid_t tid_pid;
	pid_t pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
	if (!tid || !pid || tid_pid != pid) {
		tid = (uint32_t)syscall(SYS_gettid);
		tid_pid = pid;
	}
	return tid;
}

/* The calling thread's PyThreadState in the main interpreter, or 0. */
static uintptr_t my_thread_state(struct tg_py_rd *rd, uint32_t tid)
{
	if (my_tstate && my_tstate_tid == tid) {
		/* The state CPython keeps for this very thread is live: when it
		 * is the cached one, no read is needed (a request's marker and
		 * every query come here; the read is a system call). */
		if (this_thread_state && (uintptr_t)this_thread_state() == my_tstate)
			return my_tstate;
		uint64_t t = 0;
		if (tg_py_safe_read(&t, my_tstate + TG_PYO(ts_native_tid), sizeof t) == 0 &&
		    (uint32_t)t == tid)
			return my_tstate;
	}
	struct tg_py_thread th[256];
	int n = tg_py_threads(rd, th, 256);
	for (int i = 0; i < n; i++)
		if (th[i].tid == tid) {
			my_tstate = th[i].tstate;
			my_tstate_tid = tid;
			return th[i].tstate;
		}
	return 0;
}

uintptr_t tg_py_my_thread_state(struct tg_py_rd *rd)
{
	if (tg_py_init() < 0)
		return 0;
	int direct = rd->direct;
	rd->direct = 0;
	uintptr_t ts = my_thread_state(rd, own_tid());
	rd->direct = direct;
	return ts;
}

/* A reader of the calling thread's own frames: plain loads (its frames
 * cannot change under it), on the stack of the caller. */
struct own_reader {
	uintptr_t tags[2];
	uint8_t pages[2 * PAGE];
	struct tg_py_rd rd;
};

/* Sets up o for the calling thread and its thread state *ts. Returns the
 * reader, or NULL when Python is not there or the thread has no state. */
static struct tg_py_rd *own_reader_open(struct own_reader *o, uintptr_t *ts)
{
	if (tg_py_init() < 0)
		return NULL;
	o->rd = (struct tg_py_rd){.tags = o->tags, .pages = o->pages, .nslots = 2};
	tg_py_rd_reset(&o->rd);
	*ts = my_thread_state(&o->rd, own_tid());
	o->rd.direct = 1;
	return *ts ? &o->rd : NULL;
}

int tg_py_thread_frames(uintptr_t *out, int max)
{
	if (max <= 0)
		return 0;
	struct own_reader own;
	uintptr_t ts;
	struct tg_py_own w;
	if (!own_reader_open(&own, &ts) || tg_py_own_begin(ts, &w) < 0)
		return 0;
	int total = 0;
	int cap = max < MAX_DEPTH ? max : MAX_DEPTH;
	struct tg_py_frame fr;
	while (total < cap && tg_py_own_next(&w, &fr) > 0)
		out[total++] = fr.frame;
	return total;
}

/* ---- call sites -------------------------------------------------------- */

/* Whether a file is the app's own code (not the standard library,
 * installed packages, frozen modules or TimeGlass). */
int tg_py_is_app_file(const char *fn)
{
	if (fn[0] != '/' && fn[0] != '.' && !(fn[0] && fn[1] == ':'))
		return fn[0] != '<' && fn[0] != '\0'; /* relative path: app; "<frozen ...>": not */
	if (strstr(fn, "/site-packages/") || strstr(fn, "/dist-packages/"))
		return 0;
	if (strstr(fn, "/lib/python3") || strstr(fn, "/lib64/python3"))
		return 0;
	if (strstr(fn, "/python/timeglass/")) /* TimeGlass's own package, from a source tree */
		return 0;
	return 1;
}

/* Per-thread cache: code object -> whether it is app code. */
#define CS_SLOTS 64
struct cs_entry {
	uintptr_t code;
	uint64_t ident;
	int app;
};
static TG_TLS struct cs_entry cs_cache[CS_SLOTS];

size_t tg_py_call_site(char *buf, size_t len)
{
	if (!len)
		return 0;
	buf[0] = '\0';
	struct own_reader own;
	uintptr_t ts;
	struct tg_py_rd *rd = own_reader_open(&own, &ts);
	if (!rd)
		return 0;
	struct tg_py_frame fr[128];
	int truncated;
	int n = tg_py_walk(rd, ts, fr, 128, &truncated);
	for (int i = 0; i < n; i++) {
		uint64_t ident;
		if (tg_py_code_ident(rd, fr[i].code, &ident) < 0)
			return 0;
		struct cs_entry *e = &cs_cache[(fr[i].code >> 4) & (CS_SLOTS - 1)];
		struct tg_py_code_info ci;
		uint8_t table[4096];
		if (e->code == fr[i].code && e->ident == ident && !e->app)
			continue;
		if (tg_py_code_info(rd, fr[i].code, &ci, table, sizeof table) < 0)
			return 0;
		e->code = fr[i].code;
		e->ident = ident;
		e->app = tg_py_is_app_file(ci.filename);
		if (!e->app)
			continue;
		int line = tg_py_addr2line(table, ci.table_len, ci.firstlineno, fr[i].lasti);
		if (line < 0)
			line = ci.firstlineno;
		int w = snprintf(buf, len, "%s:%d %s", ci.filename, line, ci.qualname);
		if (w < 0) {
			buf[0] = '\0';
			return 0;
		}
		return (size_t)w < len ? (size_t)w : len - 1;
	}
	return 0;
}
