/*
 * pyframes.c - CPython frame reading (pyframes.h). Placeholder until the
 * version tables land: reports no interpreter.
 */
#include "pyframes.h"

int tg_py_init(void)
{
	return -1;
}

int tg_py_thread_frames(uintptr_t *out, int max)
{
	(void)out;
	(void)max;
	return 0;
}

size_t tg_py_call_site(char *buf, size_t len)
{
	if (len)
		buf[0] = '\0';
	return 0;
}
