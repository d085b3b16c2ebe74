/*
 * collector/stacks.c - Python stack samples in the collector (stacks.h).
 *
 * Per process: a map of code objects (address -> names, first line, location
 * table, identity) fed by TG_EV_CODE, a cache (code, identity, instruction)
 * -> frames.id, a cache of stack hashes -> stacks.id, the recent requests
 * (for attribution by thread and time), and the samples waiting for their
 * request; which request a sample's scope token stands for is the process's
 * scope table (scopes.h). Memory is bounded: at most MAX_PENDING samples
 * wait (the oldest are settled early), recent requests are forgotten after
 * two minutes.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/event_py.h"
#include "common/grow.h"
#include "common/event_sql.h"
#include "common/lines.h"
#include "collector/record.h"
#include "collector/scopes.h"
#include "collector/stacks.h"
#include "lib/util.h"
#ifdef TG_HAVE_NATIVE
#include "symbolize/symbolize.h"
#endif

#define WAIT_NS (3 * 1000000000LL)      /* samples wait this long for their request */
#define SCOPE_WAIT_NS (60 * 1000000000LL) /* ... or this long when they carry a scope token */
#define KEEP_NS (120 * 1000000000LL)    /* requests remembered this long */
#define LONG_NS (1000000000LL)          /* requests longer than this are kept apart */
#define MAX_PENDING (1u << 20)
#define RAW_SLOTS 4096 /* samples' frame lists remembered with their stacks.id (a power of two) */

struct code {
	uint64_t addr, ident;
	char *qualname, *filename;
	int firstlineno;
	uint8_t *table;
	uint32_t table_len;
	int hidden; /* TimeGlass's own Python code: left out of stacks */
};

struct frame_key {
	uint64_t addr, ident;
	int32_t lasti;
	int64_t id; /* frames.id, 0 = free slot */
};

/* A native instruction address of the process and its frames.id. */
struct native_key {
	uint64_t addr;
	int64_t id;   /* 0 = free slot */
	int eval;     /* 1: the eval loop (_PyEval_EvalFrameDefault) */
};

struct stack_key {
	uint64_t hash;
	int64_t id; /* stacks.id, 0 = free slot */
};

/* A sample's Python frames as sent (code address, instruction: raw_hash())
 * and the stacks.id they came to, so that a stack seen before costs one
 * hash of its frames instead of a lookup per frame. */
struct raw_stack {
	uint64_t hash;
	int64_t id; /* 0 = free slot */
	uint32_t n;
	uint64_t top; /* the innermost frame's code address */
	int32_t top_lasti;
};

/* An open-addressing hash table of slots of one type (struct table_type). */
struct table {
	void *slots;
	size_t n, cap; /* cap: 0 or a power of two */
};

struct pending {
	int64_t ts_ns; /* sample time, CLOCK_MONOTONIC of the app */
	uint64_t scope;
	int64_t stack_id;
	int64_t cpu_ns;
	uint32_t tid;
	uint32_t weight;     /* sampling periods it stands for */
	int64_t interval_ns; /* wall time those periods span, ending at ts_ns (weight > 1) */
	uint8_t state;
	uint8_t eval; /* taken in the eval hook (TG_SAMPLEF_EVAL) */
};

struct recent_req {
	int64_t id;
	int64_t start_ns, end_ns;
	uint32_t tid;
};

/* A function span of exact-trace mode waiting for its request. */
struct pfunc {
	struct pending s; /* time (start), scope and thread, as for a sample */
	int64_t end_ns;
	uint16_t flags;
	uint16_t site_len;
	char *site;
};

struct agg {
	int64_t request_id, stack_id;
	uint8_t state;
	int64_t count, cpu_ns;
	uint32_t tid; /* UINT32_MAX: mixed */
	int used;
};

/* The CPU time one settle's samples give a request (tg_stacks_settle()). */
struct req_cpu {
	int64_t request_id, cpu_ns; /* request_id 0: a free slot */
};

/* A sample whose request is known (tg_stacks_settle()). */
struct settled {
	struct pending s;
	int64_t req;                 /* requests.id, 0 for none */
	const struct recent_req *win; /* the request found by thread and time, else NULL */
};

struct tg_stacks_proc {
	struct table codes;   /* struct code */
	struct table frames;  /* struct frame_key */
	struct table stacks;  /* struct stack_key */
	struct table natives; /* struct native_key */
	struct raw_stack *raw; /* RAW_SLOTS, by raw_hash(); NULL until the first sample */
	uint64_t code_gen;     /* code objects received: a new one may name a raw stack's frames anew */
	uint64_t rollbacks;    /* the store's rolled-back batches when the id caches were last checked */
#ifdef TG_HAVE_NATIVE
	struct tg_sym_proc *sym;
#endif
	struct pending *pend;
	size_t npend, pend_cap;
	struct settled *settled;  /* scratch of tg_stacks_settle() */
	size_t settled_cap;
	struct pfunc *funcs;
	size_t nfuncs, funcs_cap;
	struct recent_req *reqs;  /* recent requests of at most LONG_NS, by end_ns */
	size_t nreqs, reqs_cap;
	int64_t reqs_max_ns;      /* no request in reqs lasted longer (ns) */
	struct recent_req *longs; /* the longer ones (few), in arrival order */
	size_t nlongs, longs_cap;
	uint64_t seen_dropped, seen_ring_full; /* PY_INFO counters already stored */
	uint64_t seen_budget_skipped, seen_eval_busy;
	int64_t last_now;
};

struct tg_stacks_proc *tg_stacks_proc_new(void)
{
	return calloc(1, sizeof(struct tg_stacks_proc));
}

static void code_free(struct code *c)
{
	free(c->qualname);
	free(c->filename);
	free(c->table);
}

void tg_stacks_proc_free(struct tg_stacks_proc *p)
{
	if (!p)
		return;
	struct code *codes = p->codes.slots;
	for (size_t i = 0; i < p->codes.cap; i++)
		if (codes[i].addr)
			code_free(&codes[i]);
	free(p->codes.slots);
	free(p->frames.slots);
	free(p->stacks.slots);
	free(p->natives.slots);
	free(p->raw);
#ifdef TG_HAVE_NATIVE
	tg_sym_proc_free(p->sym);
#endif
	free(p->pend);
	free(p->settled);
	for (size_t i = 0; i < p->nfuncs; i++)
		free(p->funcs[i].site);
	free(p->funcs);
	free(p->reqs);
	free(p->longs);
	free(p);
}

/* ---- hash tables ---- */

/*
 * The caches of a process (code objects, frames, stacks, native addresses)
 * are tables of different slot types that work alike: linear probing, at
 * most half full, nothing ever removed (so a probe ends at the first free
 * slot). A slot is free while its 64-bit field at offset mark is 0: the key
 * where 0 is no key (a code address), else the id cached. Keys are passed as
 * slots with their key fields set.
 */
struct table_type {
	size_t size;      /* of a slot */
	size_t mark;      /* offset of the field that is 0 in free slots */
	size_t first_cap; /* a power of two */
	uint64_t (*hash)(const void *key);
	int (*eq)(const void *slot, const void *key);
};

static inline int table_used(const struct table_type *ty, const void *slot)
{
	return *(const uint64_t *)((const char *)slot + ty->mark) != 0;
}

/* The slot of key in t (not empty): the one holding it, or the free one it
 * would take. Every frame of every sample comes here: always inlined, so
 * that with the table type a constant hash and eq are direct calls, and
 * inlined in turn (no cost over a loop written for each table). */
static inline __attribute__((always_inline)) void *table_probe(const struct table *t,
							       const struct table_type *ty, const void *key)
{
	size_t m = t->cap - 1;
	for (size_t i = ty->hash(key) & m;; i = (i + 1) & m) {
		char *slot = (char *)t->slots + i * ty->size;
		if (!table_used(ty, slot) || ty->eq(slot, key))
			return slot;
	}
}

/* Stores key (marked used) in slot, the free one table_probe() found. */
static inline void table_fill(struct table *t, const struct table_type *ty, void *slot, const void *key)
{
	memcpy(slot, key, ty->size);
	t->n++;
}

/* Doubles t (or allocates it) and moves its keys over; -1 on ENOMEM. */
static int table_grow(struct table *t, const struct table_type *ty)
{
	struct table nt = {.n = t->n, .cap = t->cap ? t->cap * 2 : ty->first_cap};
	if (!(nt.slots = calloc(nt.cap, ty->size)))
		return -1;
	for (size_t i = 0; i < t->cap; i++) {
		const char *slot = (const char *)t->slots + i * ty->size;
		if (table_used(ty, slot))
			memcpy(table_probe(&nt, ty, slot), slot, ty->size);
	}
	free(t->slots);
	*t = nt;
	return 0;
}

/* Makes room for one more key; -1 on ENOMEM (t left as it was). */
static inline int table_reserve(struct table *t, const struct table_type *ty)
{
	return (t->n + 1) * 2 <= t->cap ? 0 : table_grow(t, ty);
}

/* Keys of one 64-bit field, the slot's first: a code or native address, a
 * stack hash. */
_Static_assert(offsetof(struct code, addr) == 0 && offsetof(struct stack_key, hash) == 0 &&
	       offsetof(struct native_key, addr) == 0, "u64_hash() and u64_eq() read the slot's first field");

static inline uint64_t u64_hash(const void *key)
{
	return tg_mix64(*(const uint64_t *)key);
}

static inline int u64_eq(const void *slot, const void *key)
{
	return *(const uint64_t *)slot == *(const uint64_t *)key;
}

static inline uint64_t frame_hash(const void *key)
{
	const struct frame_key *k = key;
	return tg_mix64(k->addr ^ tg_mix64(k->ident ^ (uint64_t)k->lasti));
}

static inline int frame_eq(const void *slot, const void *key)
{
	const struct frame_key *a = slot, *b = key;
	return a->addr == b->addr && a->ident == b->ident && a->lasti == b->lasti;
}

#define TABLE_TYPE(type, mark_field, first, hash_fn, eq_fn) \
	{.size = sizeof(type), .mark = offsetof(type, mark_field), .first_cap = (first), .hash = hash_fn, .eq = eq_fn}

static const struct table_type code_table = TABLE_TYPE(struct code, addr, 1024, u64_hash, u64_eq);
static const struct table_type frame_table = TABLE_TYPE(struct frame_key, id, 4096, frame_hash, frame_eq);
static const struct table_type stack_table = TABLE_TYPE(struct stack_key, id, 4096, u64_hash, u64_eq);
static const struct table_type native_table = TABLE_TYPE(struct native_key, id, 1024, u64_hash, u64_eq);

/* ---- code objects ---- */

static struct code *code_find(struct tg_stacks_proc *p, uint64_t addr)
{
	if (!p->codes.cap)
		return NULL;
	struct code *c = table_probe(&p->codes, &code_table, &(struct code){.addr = addr});
	return c->addr ? c : NULL;
}

/* The slot for addr (existing or new), NULL on ENOMEM. */
static struct code *code_slot(struct tg_stacks_proc *p, uint64_t addr)
{
	struct code key = {.addr = addr};
	if (table_reserve(&p->codes, &code_table) < 0)
		return NULL;
	struct code *c = table_probe(&p->codes, &code_table, &key);
	if (!c->addr)
		table_fill(&p->codes, &code_table, c, &key);
	return c;
}

/* 1 if filename is a module of the timeglass package (the bootstrap and
 * middleware that wrap each request, the threadpool and driver wrappers):
 * they are not the app's, and a stack shows the app's frames joined
 * without them. Matched by the package's directory name and the module's
 * name, wherever the package is installed. */
static int timeglass_file(const char *filename)
{
	static const char *const modules[] = {
		"timeglass/middleware.py", "timeglass/_autopatch.py", "timeglass/_native.py",
		"timeglass/_routes.py",    "timeglass/_text.py",      "timeglass/_trace.py",
		"timeglass/_recorder.py",  "timeglass/_store.py",     "timeglass/pytest_plugin.py",
		"timeglass/bootstrap/sitecustomize.py",
	};
	size_t n = strlen(filename);
	for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
		size_t m = strlen(modules[i]);
		if (n > m && filename[n - m - 1] == '/' && memcmp(filename + n - m, modules[i], m) == 0)
			return 1;
	}
	return 0;
}

/* 1 if call site "file:line function" is in timeglass_file(). */
static int site_is_timeglass(const char *site)
{
	const char *sp = strchr(site, ' ');
	size_t n = sp ? (size_t)(sp - site) : strlen(site);
	while (n && site[n - 1] >= '0' && site[n - 1] <= '9')
		n--;
	if (!n || site[n - 1] != ':')
		return 0;
	char file[1024];
	if (n - 1 >= sizeof file)
		return 0;
	memcpy(file, site, n - 1);
	file[n - 1] = '\0';
	return timeglass_file(file);
}

static int on_code(struct tg_stacks_proc *p, const void *rec, uint32_t size)
{
	const struct tg_ev_code *e = rec;
	if (size < sizeof *e || !e->code)
		return -1;
	size_t need = sizeof *e + (size_t)e->qualname_len + e->filename_len + e->table_len;
	if (need > size)
		return -1;
	const char *d = (const char *)(e + 1);
	struct code *c = code_slot(p, e->code);
	if (!c)
		return 0;
	p->code_gen++;
	if (c->qualname)
		code_free(c);
	c->ident = e->ident;
	c->firstlineno = e->firstlineno;
	c->qualname = strndup(d, e->qualname_len);
	c->filename = strndup(d + e->qualname_len, e->filename_len);
	c->hidden = c->filename && timeglass_file(c->filename);
	c->table = malloc(e->table_len ? e->table_len : 1);
	c->table_len = c->table ? e->table_len : 0;
	if (c->table)
		memcpy(c->table, d + e->qualname_len + e->filename_len, e->table_len);
	return 0;
}

/* ---- frames and stacks ---- */

/* frames.id of instruction lasti of code addr, 0 on error, -1 for a frame
 * of TimeGlass's own code (left out). */
static int64_t frame_id(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, uint64_t addr, int32_t lasti)
{
	struct code *co = code_find(p, addr);
	if (co && co->hidden)
		return -1;
	struct frame_key key = {.addr = addr, .ident = co ? co->ident : 0, .lasti = lasti};
	if (table_reserve(&p->frames, &frame_table) < 0)
		return 0;
	struct frame_key *k = table_probe(&p->frames, &frame_table, &key);
	if (k->id)
		return k->id;
	int64_t id;
	if (co && co->qualname) {
		int line = tg_py_addr2line(co->table, co->table_len, co->firstlineno, lasti);
		if (line < 0)
			line = co->firstlineno;
		id = tg_store_frame_id(c->store, "python", co->qualname, co->filename, line);
	} else {
		id = tg_store_frame_id(c->store, "python", "<unknown>", "", 0);
	}
	if (id <= 0)
		return 0;
	table_fill(&p->frames, &frame_table, k,
		   &(struct frame_key){.addr = addr, .ident = key.ident, .lasti = lasti, .id = id});
	return id;
}

/* stacks.id cached for hash, else id_to_add (0: look up only), cached. */
static int64_t stack_lookup(struct tg_stacks_proc *p, uint64_t hash, int64_t id_to_add)
{
	struct stack_key key = {.hash = hash, .id = id_to_add};
	if (id_to_add && table_reserve(&p->stacks, &stack_table) < 0)
		return 0;
	if (!p->stacks.cap)
		return 0;
	struct stack_key *k = table_probe(&p->stacks, &stack_table, &key);
	if (k->id)
		return k->id;
	if (id_to_add)
		table_fill(&p->stacks, &stack_table, k, &key);
	return id_to_add;
}

/* frames.id of native address addr (a return address unless first), and
 * whether it is the eval loop; 0 on error. */
static int64_t native_id(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, uint64_t addr, int first,
			 int *eval)
{
	*eval = 0;
	struct native_key key = {.addr = addr};
	if (table_reserve(&p->natives, &native_table) < 0)
		return 0;
	struct native_key *k = table_probe(&p->natives, &native_table, &key);
	if (k->id) {
		*eval = k->eval;
		return k->id;
	}
	/* A return address points after the call: look up the call itself. */
	uint64_t at = first || !addr ? addr : addr - 1;
	const char *func = NULL, *file = NULL;
	uint64_t off = 0;
#ifdef TG_HAVE_NATIVE
	if (!p->sym && c->pid > 0)
		p->sym = tg_sym_proc_new(c->pid);
	if (p->sym)
		tg_sym_lookup(p->sym, at, &func, &file, &off);
#endif
	char name[512];
	if (func) {
		snprintf(name, sizeof name, "%s", func);
	} else if (file) {
		const char *base = strrchr(file, '/');
		snprintf(name, sizeof name, "%s+0x%llx", base ? base + 1 : file, (unsigned long long)off);
	} else {
		snprintf(name, sizeof name, "[unknown]");
	}
	int64_t id = tg_store_frame_id(c->store, "native", name, file ? file : "", 0);
	if (id <= 0)
		return 0;
	int ev = func && strncmp(func, "_PyEval_EvalFrameDefault", 24) == 0;
	*eval = ev;
	if (!file)
		return id; /* not in a known mapping yet (maps are read again later): not cached */
	table_fill(&p->natives, &native_table, k, &(struct native_key){.addr = addr, .id = id, .eval = ev});
	return id;
}

#define MAX_IDS 65536

/* stacks.id of frame ids ids[0..n) (innermost first), 0 on error. */
static int64_t stack_of_ids(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const int64_t *ids,
			    unsigned n)
{
	static char text[MAX_IDS * 21];
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (unsigned i = 0; i < n; i++)
		h = tg_mix64(h ^ (uint64_t)ids[i]) + i;
	int64_t id = stack_lookup(p, h, 0);
	if (id)
		return id;
	/* "id,id,...", root first (a new stack has dozens of ids, and a
	 * process's first seconds make hundreds of stacks). */
	char *t = text;
	for (unsigned i = n; i-- > 0;) {
		if (i + 1 < n)
			*t++ = ',';
		if (ids[i] < 0)
			*t++ = '-';
		t += tg_fmt_u64(t, ids[i] < 0 ? 0 - (uint64_t)ids[i] : (uint64_t)ids[i]);
	}
	*t = '\0';
	for (int salt = 0; salt < 4; salt++) {
		int64_t hh = (int64_t)(h + (uint64_t)salt * 0x632be59bd9b4e019ull);
		id = tg_store_stack_id(c->store, hh & INT64_MAX, text);
		if (id > 0)
			break;
		if (id == 0)
			return 0;
	}
	if (id <= 0)
		return 0;
	return stack_lookup(p, h, id);
}

/* Appends the ids of the Python frames f[*pi..n) to ids[0..*k), up to
 * MAX_IDS: all of them, or with one_run those of one call of the eval loop
 * (up to its entry frame). Advances *pi past them. Returns 0 on a store
 * error, else 1. */
static int add_py_frames(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_pyframe *f,
			 unsigned n, unsigned *pi, int64_t *ids, unsigned *k, int one_run)
{
	for (; *pi < n && *k < MAX_IDS; (*pi)++) {
		int64_t fid = frame_id(c, p, f[*pi].code, f[*pi].lasti);
		if (!fid)
			return 0;
		if (fid > 0)
			ids[(*k)++] = fid;
		if (one_run && (f[*pi].flags & TG_PYFRAME_ENTRY)) {
			(*pi)++;
			break;
		}
	}
	return 1;
}

/* stacks.id of the sample's frames (innermost first in the record), merged
 * with its native frames nat[0..nn) when nn > 0; 0 on error. The two are
 * read one after the other while the thread runs: when the native stack
 * has more calls of the eval loop than the Python stack has runs of frames
 * (the thread returned in between) the Python frames are kept alone. With
 * fewer (the native stack was cut short: TG_NATIVE_MAX frames, or code
 * without unwind information) the Python frames left over go on the root
 * side. */
static int64_t stack_id(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_pyframe *f,
			unsigned n, const uint64_t *nat, unsigned nn, int nat_truncated)
{
	static int64_t ids[MAX_IDS];
	static int64_t nids[1024];
	static int nevals[1024];
	unsigned k = 0, pi = 0, evals = 0, groups = 0;
	for (unsigned j = 0; j < nn; j++) {
		if (!(nids[j] = native_id(c, p, nat[j], j == 0, &nevals[j])))
			return 0;
		evals += nevals[j] != 0;
	}
	for (unsigned i = 0; i < n; i++)
		groups += (f[i].flags & TG_PYFRAME_ENTRY) || i + 1 == n;
	if (evals > groups)
		nn = 0;
	(void)nat_truncated; /* fewer: cut short (TG_NATIVE_MAX, or code without unwind info) */
	for (unsigned j = 0; j < nn && k < MAX_IDS; j++) {
		int eval = nevals[j];
		int64_t nid = nids[j];
		if (!eval || pi >= n) {
			ids[k++] = nid;
			continue;
		}
		/* The Python frames this call of the eval loop ran. */
		if (!add_py_frames(c, p, f, n, &pi, ids, &k, 1))
			return 0;
	}
	if (!add_py_frames(c, p, f, n, &pi, ids, &k, 0))
		return 0;
	if (!k && n) /* nothing but TimeGlass's frames: keep the innermost */
		ids[k++] = tg_store_frame_id(c->store, "python", "<timeglass>", "", 0);
	return k && ids[0] > 0 ? stack_of_ids(c, p, ids, k) : 0;
}

/* ---- a batch rolled back ---- */

static void table_clear(struct table *t)
{
	free(t->slots);
	*t = (struct table){0};
}

/* When the store rolled a batch back (a full disk), the frames, stacks and
 * requests it held are gone and their ids will be given to other rows: the
 * caches of ids are emptied (their lookups go to the store again), samples
 * waiting with a stack of the lost batch are dropped, counted as lost,
 * rather than stored under another stack, and the lost requests are no
 * longer candidates for samples by thread and time. (Scopes joined to
 * them are seen to by tg_scopes_lost_after().) */
static void check_rollback(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p)
{
	int64_t kept, reqs_kept;
	uint64_t n = tg_store_rollbacks(c->store, &kept, &reqs_kept);
	if (n == p->rollbacks)
		return;
	p->rollbacks = n;
	table_clear(&p->frames);
	table_clear(&p->stacks);
	table_clear(&p->natives);
	if (p->raw)
		memset(p->raw, 0, RAW_SLOTS * sizeof *p->raw);
	size_t keep = 0;
	for (size_t i = 0; i < p->npend; i++)
		if (p->pend[i].stack_id <= kept)
			p->pend[keep++] = p->pend[i];
	tg_store_count_lost(c->store, p->npend - keep);
	p->npend = keep;
	/* Requests of the lost batch: no sample goes to them by time. */
	keep = 0;
	for (size_t i = 0; i < p->nreqs; i++)
		if (p->reqs[i].id <= reqs_kept)
			p->reqs[keep++] = p->reqs[i];
	p->nreqs = keep;
	keep = 0;
	for (size_t i = 0; i < p->nlongs; i++)
		if (p->longs[i].id <= reqs_kept)
			p->longs[keep++] = p->longs[i];
	p->nlongs = keep;
}

/* ---- samples ---- */

/* The hash of a sample's Python frames and of the code objects known when
 * it is taken (code_gen): a code object received since may turn a frame
 * of "<unknown>" into a function, or an address into another function. */
static uint64_t raw_hash(const struct tg_stacks_proc *p, const struct tg_ev_pyframe *f, unsigned n)
{
	uint64_t h = tg_mix64(p->code_gen ^ ((uint64_t)n << 48));
	for (unsigned i = 0; i < n; i++)
		h = tg_mix64(h ^ f[i].code) + (uint64_t)(uint32_t)f[i].lasti;
	return h ? h : 1;
}

/* stacks.id of Python frames f[0..n) without native frames, through the
 * raw stacks seen before; 0 on error. */
static int64_t py_stack_id(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_pyframe *f,
			   unsigned n)
{
	if (!p->raw && !(p->raw = calloc(RAW_SLOTS, sizeof *p->raw)))
		return stack_id(c, p, f, n, NULL, 0, 0);
	uint64_t h = raw_hash(p, f, n);
	struct raw_stack *r = &p->raw[h & (RAW_SLOTS - 1)];
	if (r->id && r->hash == h && r->n == n && r->top == f[0].code && r->top_lasti == f[0].lasti)
		return r->id;
	int64_t id = stack_id(c, p, f, n, NULL, 0, 0);
	if (id)
		*r = (struct raw_stack){.hash = h, .id = id, .n = n, .top = f[0].code, .top_lasti = f[0].lasti};
	return id;
}

static int on_sample(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const void *rec, uint32_t size,
		     int64_t now_ns)
{
	const struct tg_ev_sample *e = rec;
	if (size < sizeof *e || (size - sizeof *e) / sizeof(struct tg_ev_pyframe) < e->nframes ||
	    e->nframes == 0 || e->state > TG_PYSTATE_WAITING)
		return -1;
	const struct tg_ev_pyframe *pf = (const struct tg_ev_pyframe *)(e + 1);
	const uint64_t *nat = NULL;
	unsigned nn = 0;
	int nat_truncated = 0;
	if (e->flags & TG_SAMPLEF_NATIVE) {
		size_t used = sizeof *e + (size_t)e->nframes * sizeof *pf;
		const struct tg_ev_native *nh = (const struct tg_ev_native *)(pf + e->nframes);
		if (size - used < sizeof *nh || (size - used - sizeof *nh) / sizeof(uint64_t) < nh->n ||
		    nh->n > 1024)
			return -1;
		nat = (const uint64_t *)(nh + 1);
		nn = nh->n;
		nat_truncated = (nh->flags & TG_NATIVE_TRUNCATED) != 0;
	}
	int64_t sid = nn ? stack_id(c, p, pf, e->nframes, nat, nn, nat_truncated) : py_stack_id(c, p, pf, e->nframes);
	if (!sid)
		return 0; /* store error: counted by the store */
	if (p->npend == p->pend_cap) {
		if (p->pend_cap >= MAX_PENDING)
			tg_stacks_settle(c, p, now_ns, 1);
		if (TG_GROW(p->pend, p->npend, p->pend_cap, 4096) < 0)
			return 0;
	}
	p->pend[p->npend++] = (struct pending){.ts_ns = (int64_t)e->ts_ns, .scope = e->scope, .stack_id = sid,
					       .cpu_ns = (int64_t)e->cpu_ns, .tid = e->tid,
					       .weight = e->weight ? e->weight : 1,
					       .interval_ns = (int64_t)e->interval_ns, .state = e->state,
					       .eval = (e->flags & TG_SAMPLEF_EVAL) != 0};
	return 0;
}

static int on_func(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const void *rec, uint32_t size,
		   int64_t now_ns)
{
	const struct tg_ev_py_func *e = rec;
	if (size < sizeof *e || size - sizeof *e < e->site_len || e->end_ns < e->start_ns)
		return -1;
	if (p->nfuncs == p->funcs_cap) {
		if (p->funcs_cap >= MAX_PENDING / 4)
			tg_stacks_settle(c, p, now_ns, 1);
		if (TG_GROW(p->funcs, p->nfuncs, p->funcs_cap, 1024) < 0)
			return 0;
	}
	char *site = e->site_len ? strndup((const char *)(e + 1), e->site_len) : NULL;
	if (site && site_is_timeglass(site)) {
		free(site); /* the wrappers of each request are not the app's functions */
		return 0;
	}
	p->funcs[p->nfuncs++] = (struct pfunc){
		.s = {.ts_ns = (int64_t)e->start_ns, .scope = e->scope, .tid = e->tid},
		.end_ns = (int64_t)e->end_ns, .flags = e->flags, .site_len = site ? e->site_len : 0, .site = site};
	return 0;
}

/* Stores the growth of one of the sampler's running counters (total) since
 * the last record as a loss of that kind. */
static void add_growth(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const char *kind, uint64_t total,
		       uint64_t *seen)
{
	if (total > *seen) {
		tg_store_loss_add(c->store, c->run_id, c->process_id, c->mono_to_unix + p->last_now, kind,
				  (int64_t)(total - *seen), 0);
		*seen = total;
	}
}

static void on_info(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_py_info *e)
{
	add_growth(c, p, "py_sample_race", e->dropped, &p->seen_dropped);
	add_growth(c, p, "py_sample_ring_full", e->ring_full, &p->seen_ring_full);
	/* The sampler lowered its rate to stay within its CPU budget: the ticks
	 * it did not take (not requests lost). */
	add_growth(c, p, "py_sample_budget", e->budget_skipped, &p->seen_budget_skipped);
	/* Eval-clocked samples a thread skipped because another thread held
	 * the sampler's buffers (free-threaded builds; under the GIL only at the
	 * switch from the sampler thread, finishing its last pass). */
	add_growth(c, p, "py_sample_busy", e->eval_busy, &p->seen_eval_busy);
}

int tg_stacks_record(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const void *rec, uint32_t size,
		     int64_t now_ns)
{
	const struct tg_ev_hdr *h = rec;
	switch (h->type) {
	case TG_EV_CODE:
		return on_code(p, rec, size);
	case TG_EV_SAMPLE:
		check_rollback(c, p);
		return on_sample(c, p, rec, size, now_ns);
	case TG_EV_PY_FUNC:
		return on_func(c, p, rec, size, now_ns);
	case TG_EV_PY_INFO:
		if (size < sizeof(struct tg_ev_py_info))
			return -1;
		on_info(c, p, rec);
		return 0;
	default:
		return 0;
	}
}

void tg_stacks_request(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, const struct tg_ev_request *r,
		       int64_t request_id)
{
	(void)c;
	if (!request_id)
		return;
	struct recent_req rr = {.id = request_id, .start_ns = (int64_t)r->start_ns, .end_ns = (int64_t)r->end_ns,
				.tid = r->tid};
	if (rr.end_ns - rr.start_ns > LONG_NS) {
		if (TG_GROW(p->longs, p->nlongs, p->longs_cap, 16) < 0)
			return;
		p->longs[p->nlongs++] = rr;
		return;
	}
	if (TG_GROW(p->reqs, p->nreqs, p->reqs_cap, 256) < 0)
		return;
	/* Records come in about the order their responses ended: the place
	 * by end_ns is at most a few steps from the tail. */
	if (rr.end_ns - rr.start_ns > p->reqs_max_ns)
		p->reqs_max_ns = rr.end_ns - rr.start_ns;
	size_t i = p->nreqs++;
	while (i > 0 && p->reqs[i - 1].end_ns > rr.end_ns) {
		p->reqs[i] = p->reqs[i - 1];
		i--;
	}
	p->reqs[i] = rr;
}

/* Counts r for sample s if r was in flight at its time (see by_thread). */
struct in_flight {
	const struct recent_req *w_tid, *w_any;
	int n_tid, n_any;
};

static void in_flight_at(struct in_flight *f, const struct recent_req *r, const struct pending *s)
{
	if (s->ts_ns < r->start_ns || s->ts_ns > r->end_ns)
		return;
	f->n_any++;
	f->w_any = r;
	if (r->tid == s->tid) {
		f->n_tid++;
		f->w_tid = r;
	}
}

/* The request of a sample without a usable scope: by thread and time
 * (*win: its window). The thread that read a request serves it (an event
 * loop, a sync worker of the server) when it is the only request in flight
 * on that thread. Another thread is the request's only while it runs its
 * work: under the marker, such a thread says so (thread_enter: its samples
 * carry the scope), so a sample of another thread without a scope is an
 * idle worker, never the request's; without the marker, a running sample of
 * another thread goes to the only request in flight in the process, and a
 * waiting one (a worker parked on its queue) to none. */
static int64_t by_thread(const struct tg_stacks_proc *p, const struct pending *s, int marked,
			 const struct recent_req **win)
{
	struct in_flight f = {0};
	/* Among the short requests, only those that ended at ts_ns or within
	 * the longest one's duration (at most LONG_NS) after it can have been
	 * in flight then. */
	size_t lo = 0, hi = p->nreqs;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->reqs[mid].end_ns < s->ts_ns)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < p->nreqs && p->reqs[i].end_ns - p->reqs_max_ns <= s->ts_ns; i++)
		in_flight_at(&f, &p->reqs[i], s);
	for (size_t i = 0; i < p->nlongs; i++)
		in_flight_at(&f, &p->longs[i], s);
	if (f.n_tid == 1) {
		*win = f.w_tid;
		return f.w_tid->id;
	}
	if (f.n_tid == 0 && f.n_any == 1 && !marked && s->state == TG_PYSTATE_RUNNING) {
		*win = f.w_any;
		return f.w_any->id;
	}
	return 0;
}

/* 1 and *req set when sample s can be attributed now, 0 to keep waiting.
 * open_since: start of the oldest request known to be still in flight. */
static int attribute(const struct tg_stacks_ctx *c, const struct tg_stacks_proc *p, const struct pending *s,
		     int64_t app_now, int final, int64_t open_since, int64_t *req, const struct recent_req **win)
{
	*win = NULL;
	if (s->scope) {
		const struct tg_scope *sc = c->scopes ? tg_scopes_find(c->scopes, s->scope) : NULL;
		if (sc && sc->joined) {
			*req = sc->request_id; /* 0: its row was lost; not another request by thread */
			return 1;
		}
		if (!final && app_now - s->ts_ns < SCOPE_WAIT_NS)
			return 0;
	} else if (!final && (app_now - s->ts_ns < WAIT_NS || s->ts_ns >= open_since)) {
		return 0; /* its request, or a concurrent one, may not be known yet */
	}
	*req = by_thread(p, s, c->scopes && tg_scopes_any(c->scopes), win);
	return 1;
}

static int64_t open_since_of(const struct tg_stacks_ctx *c, int64_t app_now)
{
	return c->scopes ? tg_scopes_open_since(c->scopes, app_now, SCOPE_WAIT_NS) : INT64_MAX;
}

/* Writes the function spans whose request is known (final: all). */
static void settle_funcs(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, int64_t app_now, int final)
{
	if (!p->nfuncs)
		return;
	int64_t open_since = open_since_of(c, app_now);
	size_t keep = 0;
	for (size_t i = 0; i < p->nfuncs; i++) {
		struct pfunc *f = &p->funcs[i];
		int64_t req = 0;
		const struct recent_req *win;
		if (!attribute(c, p, &f->s, app_now, final, open_since, &req, &win)) {
			p->funcs[keep++] = *f;
			continue;
		}
		if (!req) { /* outside any request (start-up, background work): not kept */
			free(f->site);
			continue;
		}
		static const char err[] = "exception";
		struct tg_span_row row = {
			.run_id = c->run_id,
			.process_id = c->process_id,
			.request_id = req,
			.pid = c->pid,
			.tid = f->s.tid,
			.kind = "function",
			.start_unix_ns = f->s.ts_ns + c->mono_to_unix,
			.duration_ns = f->end_ns - f->s.ts_ns,
			.error = (f->flags & TG_PYFUNC_ERROR) ? err : NULL,
			.error_len = (f->flags & TG_PYFUNC_ERROR) ? sizeof err - 1 : 0,
			.call_site = f->site,
			.call_site_len = f->site_len,
			.attribution = f->s.scope ? "scope" : "thread",
		};
		tg_store_span_add(c->store, &row);
		free(f->site);
	}
	p->nfuncs = keep;
}

/* Adds count samples of s (and cpu_ns of CPU) to request req in tab. */
static void agg_add_state(struct agg *tab, size_t cap, int64_t req, const struct pending *s, uint8_t state,
			  int64_t count, int64_t cpu_ns)
{
	uint64_t h = tg_mix64((uint64_t)req * 31 + (uint64_t)s->stack_id * 7 + state);
	size_t j;
	for (j = h & (cap - 1); tab[j].used; j = (j + 1) & (cap - 1))
		if (tab[j].request_id == req && tab[j].stack_id == s->stack_id && tab[j].state == state)
			break;
	struct agg *a = &tab[j];
	if (!a->used) {
		*a = (struct agg){.request_id = req, .stack_id = s->stack_id, .state = state, .tid = s->tid,
				  .used = 1};
	} else if (a->tid != s->tid) {
		a->tid = UINT32_MAX;
	}
	a->count += count;
	a->cpu_ns += cpu_ns;
}

/* Adds count samples of s to request req. A timer sample has one state; an
 * eval sample stands for many periods, during which the thread ran for
 * cpu_ns of interval_ns: that share of its periods is running, the rest
 * waiting (preempted, blocked), as a timer would have labelled them one by
 * one. */
static void agg_add(struct agg *tab, size_t cap, int64_t req, const struct pending *s, int64_t count, int64_t cpu_ns)
{
	if (!s->eval || s->interval_ns <= 0 || count <= 1) {
		agg_add_state(tab, cap, req, s, s->state, count, cpu_ns);
		return;
	}
	double f = (double)s->cpu_ns / (double)s->interval_ns;
	int64_t run = (int64_t)((double)count * (f < 1.0 ? f : 1.0) + 0.5);
	if (run > 0)
		agg_add_state(tab, cap, req, s, TG_PYSTATE_RUNNING, run, cpu_ns);
	if (count - run > 0)
		agg_add_state(tab, cap, req, s, TG_PYSTATE_WAITING, count - run, run > 0 ? 0 : cpu_ns);
}

/* Adds cpu_ns to request req in tab (cap slots, a power of two, never full). */
static void req_cpu_add(struct req_cpu *tab, size_t cap, int64_t req, int64_t cpu_ns)
{
	size_t k = (size_t)((uint64_t)req * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
	while (tab[k].request_id && tab[k].request_id != req)
		k = (k + 1) & (cap - 1);
	tab[k].request_id = req;
	tab[k].cpu_ns += cpu_ns;
}

void tg_stacks_settle(const struct tg_stacks_ctx *c, struct tg_stacks_proc *p, int64_t now_ns, int final)
{
	/* Samples carry the app's CLOCK_MONOTONIC, the same clock as ours. */
	int64_t app_now = now_ns;
	p->last_now = now_ns;
	check_rollback(c, p);
	settle_funcs(c, p, app_now, final);
	if (!p->npend)
		goto forget;
	/* The samples whose request is known now move to the end of the
	 * array, the others stay (in order) at its start: the table below is
	 * sized by those settled, not by all those waiting (idle threads'
	 * samples wait seconds). */
	if (p->settled_cap < p->npend) {
		struct settled *ns = realloc(p->settled, p->npend * sizeof *ns);
		if (!ns)
			return;
		p->settled = ns;
		p->settled_cap = p->npend;
	}
	int64_t open_since = open_since_of(c, app_now);
	size_t keep = 0, nsettled = 0;
	for (size_t i = 0; i < p->npend; i++) {
		struct pending *s = &p->pend[i];
		struct settled *d = &p->settled[nsettled];
		if (!attribute(c, p, s, app_now, final, open_since, &d->req, &d->win)) {
			p->pend[keep++] = *s;
			continue;
		}
		d->s = *s;
		nsettled++;
	}
	p->npend = keep;
	if (!nsettled)
		goto forget;
	size_t cap = 1;
	while (cap < nsettled * 8) /* a sample can become four rows (two requests, two states) */
		cap <<= 1;
	struct agg *tab = calloc(cap, sizeof *tab);
	/* A request's samples, however many stacks and states, add to its
	 * CPU time with one UPDATE (a rewrite of its whole row). Its requests
	 * are at most the rows of tab, under half of cap. */
	struct req_cpu *cpus = calloc(cap, sizeof *cpus);
	if (!tab || !cpus) {
		free(tab);
		free(cpus);
		return;
	}
	for (size_t i = 0; i < nsettled; i++) {
		const struct pending *s = &p->settled[i].s;
		const struct recent_req *win = p->settled[i].win;
		int64_t req = p->settled[i].req;
		int64_t count = s->weight, cpu = s->cpu_ns;
		if (win && s->weight > 1 && s->interval_ns > 0) {
			/* An eval-clocked sample found by thread and time stands for
			 * a span of time (a thread blocked since long before, say an
			 * idle worker woken for this request): the request gets the
			 * part of it inside its own window, the rest no request. */
			int64_t from = s->ts_ns - s->interval_ns, lo = from > win->start_ns ? from : win->start_ns;
			int64_t hi = s->ts_ns < win->end_ns ? s->ts_ns : win->end_ns;
			double in = hi > lo ? (double)(hi - lo) / (double)s->interval_ns : 0.0;
			count = (int64_t)((double)s->weight * in + 0.5);
			cpu = (int64_t)((double)s->cpu_ns * in);
			if (s->weight - count > 0)
				agg_add(tab, cap, 0, s, s->weight - count, s->cpu_ns - cpu);
		}
		if (count > 0)
			agg_add(tab, cap, req, s, count, cpu);
	}
	for (size_t j = 0; j < cap; j++) {
		struct agg *a = &tab[j];
		if (!a->used)
			continue;
		struct tg_sample_row row = {.run_id = c->run_id, .request_id = a->request_id,
					    .process_id = c->process_id,
					    .tid = a->tid == UINT32_MAX ? 0 : a->tid, .stack_id = a->stack_id,
					    .state = a->state == TG_PYSTATE_RUNNING ? "running" : "waiting",
					    .count = a->count, .cpu_ns = a->cpu_ns};
		tg_store_sample_add(c->store, &row);
		/* Per-request CPU time: the CPU its samples stand for. */
		if (a->request_id && a->cpu_ns)
			req_cpu_add(cpus, cap, a->request_id, a->cpu_ns);
	}
	for (size_t j = 0; j < cap; j++)
		if (cpus[j].request_id)
			tg_store_request_cpu_add(c->store, cpus[j].request_id, cpus[j].cpu_ns);
	free(tab);
	free(cpus);
forget:
	/* Forget requests no sample can be attributed to any more: those that
	 * ended before the oldest sample or span still waiting, and before
	 * the samples still to come (they wait WAIT_NS after they arrive). A
	 * steady load keeps a few seconds of requests, not KEEP_NS of them. */
	if (!final) {
		int64_t oldest = app_now - WAIT_NS - 2 * LONG_NS;
		for (size_t i = 0; i < p->npend; i++)
			if (p->pend[i].ts_ns - LONG_NS < oldest)
				oldest = p->pend[i].ts_ns - LONG_NS;
		for (size_t i = 0; i < p->nfuncs; i++)
			if (p->funcs[i].s.ts_ns - LONG_NS < oldest)
				oldest = p->funcs[i].s.ts_ns - LONG_NS;
		if (oldest < app_now - KEEP_NS)
			oldest = app_now - KEEP_NS;
		size_t k = 0;
		while (k < p->nreqs && p->reqs[k].end_ns < oldest) /* sorted by end_ns */
			k++;
		if (k) {
			memmove(p->reqs, p->reqs + k, (p->nreqs - k) * sizeof *p->reqs);
			p->nreqs -= k;
			p->reqs_max_ns = 0;
			for (size_t i = 0; i < p->nreqs; i++)
				if (p->reqs[i].end_ns - p->reqs[i].start_ns > p->reqs_max_ns)
					p->reqs_max_ns = p->reqs[i].end_ns - p->reqs[i].start_ns;
		}
		k = 0;
		for (size_t i = 0; i < p->nlongs; i++)
			if (p->longs[i].end_ns >= oldest)
				p->longs[k++] = p->longs[i];
		p->nlongs = k;
	}
}
