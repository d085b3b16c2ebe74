/*
 * null-preload.c - an empty library for TIMEGLASS_LIB in the collector
 * tests: `timeglass run` needs a library to preload, and the tests drive the
 * collector with fake-app alone, without the real hooks.
 */
int tg_null_preload(void);

int tg_null_preload(void)
{
	return 0;
}
