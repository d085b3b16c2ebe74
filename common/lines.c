/*
 * common/lines.c - decoder of the CPython 3.11+ location table (see
 * Objects/locations.md in CPython): a sequence of entries, each starting
 * with a byte 1cccclll (c = code, l = length - 1 in code units), followed by
 * varints depending on the code.
 */
#include "common/lines.h"

struct cur {
	const uint8_t *p, *end;
	int bad; /* ran past the end */
};

static unsigned rd_byte(struct cur *c)
{
	if (c->p >= c->end) {
		c->bad = 1;
		return 0;
	}
	return *c->p++;
}

/* 6-bit chunks, least significant first, bit 6 = more. */
static unsigned rd_varint(struct cur *c)
{
	unsigned b = rd_byte(c), v = b & 63, shift = 0;
	while ((b & 64) && !c->bad && shift < 26) {
		b = rd_byte(c);
		shift += 6;
		v |= (b & 63) << shift;
	}
	return v;
}

static int rd_svarint(struct cur *c)
{
	unsigned u = rd_varint(c);
	return (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
}

int tg_py_addr2line(const uint8_t *table, size_t len, int firstlineno, int lasti)
{
	struct cur c = {table, table + len, 0};
	int line = firstlineno, addr = 0;
	if (lasti < 0)
		lasti = 0;
	while (c.p < c.end) {
		unsigned first = rd_byte(&c);
		if (!(first & 0x80))
			break; /* not an entry start: table is damaged */
		unsigned code = (first >> 3) & 15;
		int n = (int)(first & 7) + 1;
		int entry_line = line;
		int none = 0;
		switch (code) {
		case 15: /* no location */
			none = 1;
			break;
		case 14: /* long form */
			line += rd_svarint(&c);
			entry_line = line;
			rd_varint(&c);
			rd_varint(&c);
			rd_varint(&c);
			break;
		case 13: /* no column */
			line += rd_svarint(&c);
			entry_line = line;
			break;
		case 10:
		case 11:
		case 12: /* one line, delta code - 10, two column bytes */
			line += (int)code - 10;
			entry_line = line;
			rd_byte(&c);
			rd_byte(&c);
			break;
		default: /* short form, same line, one column byte */
			rd_byte(&c);
			break;
		}
		if (c.bad)
			break;
		if (lasti < addr + n)
			return none ? -1 : entry_line;
		addr += n;
	}
	return firstlineno;
}
