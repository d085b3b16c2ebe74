/*
 * common/grow.h - the growable array (and byte buffer) of the host programs (collector, store
 * readers, dashboard, symbolizer, load generator): doubled when full. Not for
 * the preload library's hooks, which must not allocate.
 */
#ifndef TG_GROW_H
#define TG_GROW_H

#include <stdlib.h>
#include <string.h>

/* Reallocates the array *(T **)arr to cap elements of size bytes (the
 * pointer goes through memcpy, whatever T is). Returns 0, or -1 without
 * memory with the array as it was. */
static inline int tg_resize(void *arr, size_t cap, size_t size)
{
	void *old, *na;
	memcpy(&old, arr, sizeof old);
	na = realloc(old, cap * size);
	if (!na)
		return -1;
	memcpy(arr, &na, sizeof na);
	return 0;
}

/* Makes room for element n of the array *(T **)arr of *cap elements of size
 * bytes: when n == *cap, reallocates it to twice *cap elements (first when
 * *cap is 0). Returns 0, or -1 without memory with the array and *cap as
 * they were. */
static inline int tg_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : first;
	if (tg_resize(arr, ncap, size) < 0)
		return -1;
	*cap = ncap;
	return 0;
}

/* Makes room for need elements in the array *(T **)arr of *cap elements of
 * size bytes: doubles *cap (from first when it is 0) until they fit. Returns
 * 0, or -1 without memory with the array and *cap as they were. */
static inline int tg_reserve(void *arr, size_t *cap, size_t need, size_t size, size_t first)
{
	if (need <= *cap)
		return 0;
	size_t ncap = *cap ? *cap : first;
	while (ncap < need)
		ncap *= 2;
	if (tg_resize(arr, ncap, size) < 0)
		return -1;
	*cap = ncap;
	return 0;
}

/* tg_grow() for the array pointer v (any T *) with n elements used of cap. */
#define TG_GROW(v, n, cap, first) tg_grow(&(v), &(cap), (n), sizeof *(v), (first))

/* tg_reserve() for the array pointer v (any T *) of cap elements. */
#define TG_RESERVE(v, need, cap, first) tg_reserve(&(v), &(cap), (need), sizeof *(v), (first))

#endif
