/*
 * pyversions.c - the per-version layout tables of pyversions.h.
 *
 * 3.11 offsets were taken with offsetof() against Debian's python3.11-dev
 * headers (x86-64, default build); 3.12 were counted from CPython 3.12.0's
 * struct definitions (pyruntimestate, _is, _ts, _PyCFrame,
 * _PyInterpreterFrame, PyCodeObject) and are checked at run time (a thread
 * state must point back to its interpreter), as no 3.12 is in the test
 * matrix;
 * 3.13 and later from the _Py_DebugOffsets the interpreter carries, whose own
 * layout changed in 3.14 (three fields more in interpreter_state, two in
 * interpreter_frame) and in 3.15 (thread_state grew from 9 to 16 fields with
 * holds_gil, a one-field err_stackitem section follows it, code_object has
 * co_tlbc). Each layout was read from the interpreter's own headers
 * (Debian's python3.13-dev, python3.14-dev, python3.15-dev).
 */
#include <stddef.h>
#include <string.h>

#include "pyversions.h"

struct tg_pyoff tg_pyoff;

static const struct tg_pyoff py311 = {
	.rt_finalizing = 24, .rt_interp_head = 40, .rt_gil_holder = 576,
	.is_next = 0, .is_threads_head = 16,
	.ts_next = 8, .ts_cframe = 56, .ts_frame = 8, .ts_thread_id = 152, .ts_native_tid = 160,
	.ts_holds_gil = TG_PYOFF_NONE,
	.fr_code = 32, .fr_previous = 48, .fr_instr = 56, .fr_owner = 69, .fr_is_entry = 68,
	.own_skip1 = -1, .own_skip2 = -1, .code_tag_mask = 0,
	.co_filename = 112, .co_name = 120, .co_qualname = 128, .co_linetable = 136,
	.co_firstlineno = 72, .co_code = 184,
	.ob_type = 8, .bytes_size = 16, .bytes_sval = 32,
	.u_length = 16, .u_state = 32, .u_ascii_data = 48, .u_compact_data = 72,
};

static const struct tg_pyoff py312 = {
	.rt_finalizing = 24, .rt_interp_head = 40, .rt_gil_holder = TG_PYOFF_NONE,
	.is_next = 0, .is_threads_head = 72,
	.ts_next = 8, .ts_cframe = 56, .ts_frame = 0, .ts_thread_id = 136, .ts_native_tid = 144,
	.ts_holds_gil = TG_PYOFF_NONE,
	.fr_code = 0, .fr_previous = 8, .fr_instr = 56, .fr_owner = 70, .fr_is_entry = TG_PYOFF_NONE,
	.own_skip1 = 3 /* FRAME_OWNED_BY_CSTACK */, .own_skip2 = -1, .code_tag_mask = 0,
	.co_filename = 112, .co_name = 120, .co_qualname = 128, .co_linetable = 136,
	.co_firstlineno = 68, .co_code = 192,
	.ob_type = 8, .bytes_size = 16, .bytes_sval = 32,
	.u_length = 16, .u_state = 32, .u_ascii_data = 40, .u_compact_data = 56,
};

/* Field positions (in uint64_t units from the start of _Py_DebugOffsets) of
 * the sections we use, for each layout of that struct. */
struct dbg_layout {
	uint32_t min_hex;   /* first version with this layout */
	unsigned runtime, interp, thread, frame, code;
	/* within thread_state: */
	unsigned ts_frame, ts_thread_id, ts_native_tid, ts_holds_gil; /* 0 = absent */
};
static const struct dbg_layout dbg_layouts[] = {
	{0x030f0000, 3, 6, 22, 39, 47, 4, 8, 9, 12}, /* 3.15 */
	{0x030e0000, 3, 6, 22, 31, 39, 4, 5, 6, 0},  /* 3.14 */
	{0x030d0000, 3, 6, 19, 28, 34, 4, 5, 6, 0},  /* 3.13 */
};

static int from_debug_offsets(uintptr_t runtime, uint32_t hex,
			      int (*rd)(void *, uintptr_t, size_t))
{
	uint64_t d[64];
	if (rd(d, runtime, sizeof d) != 0 || memcmp(d, "xdebugpy", 8) != 0)
		return -1;
	if (d[2] != 0) /* free-threaded build */
		return -1;
	const struct dbg_layout *L = NULL;
	for (size_t i = 0; i < sizeof dbg_layouts / sizeof dbg_layouts[0]; i++)
		if (hex >= dbg_layouts[i].min_hex) {
			L = &dbg_layouts[i];
			break;
		}
	if (!L)
		return -1;
	const uint64_t *rt = d + L->runtime, *is = d + L->interp, *ts = d + L->thread,
		       *fr = d + L->frame, *co = d + L->code;
	/* Plausibility: thread states begin with prev, next, interp; frames
	 * hold their code and previous pointers in the first 16 bytes. */
	if (ts[1] != 0 || ts[2] != 8 || ts[3] != 16 || fr[0] < 48 || fr[0] > 256 ||
	    fr[1] > 16 || fr[2] > 16 || co[0] < 96 || co[0] > 1024 || rt[0] < 64)
		return -1;
	for (int i = 1; i <= 5; i++)
		if (co[i] >= co[0])
			return -1;
	struct tg_pyoff o = {
		.rt_finalizing = (uint32_t)rt[1], .rt_interp_head = (uint32_t)rt[2],
		.rt_gil_holder = TG_PYOFF_NONE,
		.is_next = (uint32_t)is[2], .is_threads_head = (uint32_t)is[3],
		.ts_next = (uint32_t)ts[2], .ts_cframe = TG_PYOFF_NONE,
		.ts_frame = (uint32_t)ts[L->ts_frame], .ts_thread_id = (uint32_t)ts[L->ts_thread_id],
		.ts_native_tid = (uint32_t)ts[L->ts_native_tid],
		.ts_holds_gil = L->ts_holds_gil ? (uint32_t)ts[L->ts_holds_gil] : TG_PYOFF_NONE,
		.fr_previous = (uint32_t)fr[1], .fr_code = (uint32_t)fr[2], .fr_instr = (uint32_t)fr[3],
		.fr_owner = (uint32_t)fr[5], .fr_is_entry = TG_PYOFF_NONE,
		.co_filename = (uint32_t)co[1], .co_name = (uint32_t)co[2], .co_qualname = (uint32_t)co[3],
		.co_linetable = (uint32_t)co[4], .co_firstlineno = (uint32_t)co[5],
		.co_code = (uint32_t)co[9],
		.ob_type = 8, .bytes_size = 16, .bytes_sval = 32,
		.u_length = 16, .u_state = 32, .u_ascii_data = 40, .u_compact_data = 56,
	};
	if (hex >= 0x030e0000) {
		/* FRAME_OWNED_BY_INTERPRETER = 3, FRAME_OWNED_BY_CSTACK = 4 (3.14;
		 * gone in 3.15); f_executable is a tagged _PyStackRef. */
		o.own_skip1 = 3;
		o.own_skip2 = 4;
		o.code_tag_mask = 7;
	} else {
		o.own_skip1 = 3; /* FRAME_OWNED_BY_CSTACK */
		o.own_skip2 = -1;
		o.code_tag_mask = 0;
	}
	o.hexversion = hex;
	tg_pyoff = o;
	return 0;
}

int tg_pyoff_select(uintptr_t runtime, uint32_t hex, int (*rd)(void *, uintptr_t, size_t))
{
	uint32_t minor = (hex >> 16) & 0xff;
	if ((hex >> 24) != 3)
		return -1;
	if (minor == 11) {
		tg_pyoff = py311;
	} else if (minor == 12) {
		tg_pyoff = py312;
	} else if (minor >= 13) {
		return from_debug_offsets(runtime, hex, rd);
	} else {
		return -1;
	}
	tg_pyoff.hexversion = hex;
	return 0;
}
