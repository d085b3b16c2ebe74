/*
 * pyversions.h - where CPython keeps what the frame reader needs, per
 * interpreter version.
 *
 * All layout knowledge lives in one table (struct tg_pyoff), filled in one
 * function (tg_pyoff_select) and read through one macro (TG_PYO). 3.11 and
 * 3.12 come from built-in tables checked against the interpreter's headers;
 * 3.13 and later are read from the interpreter's own _Py_DebugOffsets (cookie
 * "xdebugpy" at the start of _PyRuntime), checked for plausibility before use.
 * Only the default (GIL) build is supported; a free-threaded interpreter is
 * refused.
 */
#ifndef TG_PYVERSIONS_H
#define TG_PYVERSIONS_H

#include <stdint.h>

#define TG_PYOFF_NONE 0xffffffffu /* the field does not exist in this version */

struct tg_pyoff {
	uint32_t hexversion;       /* PY_VERSION_HEX of the running interpreter */
	/* _PyRuntimeState (byte offsets from &_PyRuntime) */
	uint32_t rt_finalizing;    /* PyThreadState * set while finalizing */
	uint32_t rt_interp_head;   /* PyInterpreterState *interpreters.head */
	uint32_t rt_gil_holder;    /* 3.11: gilstate.tstate_current, else NONE */
	/* PyInterpreterState */
	uint32_t is_next;
	uint32_t is_threads_head;
	/* PyThreadState */
	uint32_t ts_next;
	uint32_t ts_cframe;        /* 3.11/3.12: _PyCFrame *cframe; NONE when the frame pointer is in the thread state */
	uint32_t ts_frame;         /* current_frame, in the cframe or the thread state */
	uint32_t ts_thread_id;     /* pthread_t */
	uint32_t ts_native_tid;    /* kernel thread id */
	uint32_t ts_holds_gil;     /* 3.15+: int holds_gil, else NONE */
	/* _PyInterpreterFrame */
	uint32_t fr_code;          /* f_code / f_executable */
	uint32_t fr_previous;
	uint32_t fr_instr;         /* prev_instr (3.11/3.12) or instr_ptr (3.13+) */
	uint32_t fr_owner;         /* char owner */
	uint32_t fr_is_entry;      /* 3.11: bool is_entry (first frame of an eval loop call); NONE later,
				      where a shim frame owned by C marks that call instead */
	int32_t own_skip1;         /* owner values of frames that are not Python code (-1: none) */
	int32_t own_skip2;
	uint64_t code_tag_mask;    /* bits of f_executable that are tags (3.14+ stack refs) */
	/* PyCodeObject */
	uint32_t co_filename;
	uint32_t co_name;
	uint32_t co_qualname;
	uint32_t co_linetable;
	uint32_t co_firstlineno;
	uint32_t co_code;          /* co_code_adaptive: first instruction */
	/* common objects */
	uint32_t ob_type;
	uint32_t bytes_size;       /* ob_size of PyBytesObject */
	uint32_t bytes_sval;       /* first byte */
	uint32_t u_length;         /* PyASCIIObject.length, code points */
	uint32_t u_state;          /* state bit field */
	uint32_t u_ascii_data;     /* data of a compact ASCII string */
	uint32_t u_compact_data;   /* data of a compact non-ASCII string */
};

extern struct tg_pyoff tg_pyoff;

#define TG_PYO(field) (tg_pyoff.field)

/* Fills tg_pyoff for the interpreter whose _PyRuntime is at runtime and whose
 * Py_Version is hexversion. read(dst, addr, len) must read memory safely
 * (0 on success). Returns 0 when the version is supported, -1 otherwise. */
int tg_pyoff_select(uintptr_t runtime, uint32_t hexversion,
		    int (*read)(void *dst, uintptr_t addr, size_t len));

#endif
