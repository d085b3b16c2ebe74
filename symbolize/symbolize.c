/*
 * symbolize.c - native addresses to function names with elfutils libelf
 * (symbolize.h).
 *
 * The vDSO is named "[vdso]" (no symbols read). Workload: the collector resolves each distinct native address once (it
 * caches frame ids per address), so this is a cold path: a few thousand
 * lookups per run, each a binary search once its file is loaded. Files are
 * keyed by path; each holds its PT_LOAD segments (file offset -> link-time
 * address) and its function symbols sorted by address.
 */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/grow.h"
#include "symbolize.h"

#define MAX_SEGS 16
#define MAX_FILES 4096
#define DEBUG_DIR "/usr/lib/debug"

struct sym {
	uint64_t addr, size;
	const char *name; /* in the file's string arena */
};

struct seg {
	uint64_t off, vaddr, filesz;
};

struct efile {
	char *path;
	struct seg segs[MAX_SEGS];
	int nsegs;
	struct sym *syms;
	size_t nsyms;
	char *names; /* all symbol names, NUL-separated */
};

struct map {
	uint64_t start, end, off;
	struct efile *file;
};

struct tg_sym_proc {
	pid_t pid;
	struct map *maps;
	size_t nmaps;
	time_t read_at; /* CLOCK_MONOTONIC seconds of the last read of maps */
	int read_once;
};

static struct efile *files[MAX_FILES];
static size_t nfiles;

/* ---- ELF files ---- */

struct symvec {
	struct sym *v;
	size_t n, cap;
	char *names;
	size_t nlen, ncap;
};

static int add_sym(struct symvec *sv, uint64_t addr, uint64_t size, const char *name)
{
	size_t l = strlen(name) + 1;
	if (TG_GROW(sv->v, sv->n, sv->cap, 1024) < 0)
		return -1;
	if (TG_RESERVE(sv->names, sv->nlen + l, sv->ncap, 65536) < 0)
		return -1;
	memcpy(sv->names + sv->nlen, name, l);
	/* name holds an offset until the arena stops moving */
	sv->v[sv->n++] = (struct sym){.addr = addr, .size = size, .name = (const char *)(uintptr_t)sv->nlen};
	sv->nlen += l;
	return 0;
}

/* Adds the function symbols of a symbol table section. */
static void read_symtab(Elf *e, Elf_Scn *scn, const GElf_Shdr *sh, struct symvec *sv)
{
	Elf_Data *d = elf_getdata(scn, NULL);
	if (!d || !sh->sh_entsize)
		return;
	size_t n = sh->sh_size / sh->sh_entsize;
	for (size_t i = 0; i < n; i++) {
		GElf_Sym s;
		if (!gelf_getsym(d, (int)i, &s))
			break;
		int t = GELF_ST_TYPE(s.st_info);
		if ((t != STT_FUNC && t != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || !s.st_value)
			continue;
		const char *name = elf_strptr(e, sh->sh_link, s.st_name);
		if (name && *name && add_sym(sv, s.st_value, s.st_size, name) < 0)
			return;
	}
}

struct elf_facts {
	int has_symtab;
	uint8_t build_id[64];
	size_t build_id_len;
	char debuglink[256];
};

/* Reads the symbols of path into sv (all of .symtab and .dynsym), and its
 * segments into f when f is not NULL. Returns 0, -1 if not an ELF file. */
static int read_elf(const char *path, struct symvec *sv, struct efile *f, struct elf_facts *facts)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF) {
		if (e)
			elf_end(e);
		close(fd);
		return -1;
	}
	memset(facts, 0, sizeof *facts);
	if (f) {
		size_t np = 0;
		if (elf_getphdrnum(e, &np) == 0)
			for (size_t i = 0; i < np && f->nsegs < MAX_SEGS; i++) {
				GElf_Phdr ph;
				if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD)
					f->segs[f->nsegs++] = (struct seg){ph.p_offset, ph.p_vaddr, ph.p_filesz};
			}
	}
	size_t shstrndx = 0;
	elf_getshdrstrndx(e, &shstrndx);
	for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh))
			continue;
		const char *name = elf_strptr(e, shstrndx, sh.sh_name);
		if (sh.sh_type == SHT_SYMTAB) {
			facts->has_symtab = 1;
			read_symtab(e, scn, &sh, sv);
		} else if (sh.sh_type == SHT_DYNSYM) {
			read_symtab(e, scn, &sh, sv);
		} else if (sh.sh_type == SHT_NOTE && name && strcmp(name, ".note.gnu.build-id") == 0) {
			Elf_Data *d = elf_getdata(scn, NULL);
			GElf_Nhdr nh;
			size_t off = 0, noff, doff;
			while (d && (off = gelf_getnote(d, off, &nh, &noff, &doff)) > 0)
				if (nh.n_type == NT_GNU_BUILD_ID && nh.n_descsz <= sizeof facts->build_id) {
					memcpy(facts->build_id, (const char *)d->d_buf + doff, nh.n_descsz);
					facts->build_id_len = nh.n_descsz;
				}
		} else if (name && strcmp(name, ".gnu_debuglink") == 0) {
			Elf_Data *d = elf_getdata(scn, NULL);
			if (d && d->d_size) {
				size_t l = strnlen(d->d_buf, d->d_size);
				if (l < sizeof facts->debuglink) {
					memcpy(facts->debuglink, d->d_buf, l);
					facts->debuglink[l] = '\0';
				}
			}
		}
	}
	elf_end(e);
	close(fd);
	return 0;
}

static int sym_cmp(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;
	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	/* sized symbols first at one address */
	return (x->size == 0) - (y->size == 0);
}

/* Reads the separate debug file of path, if there is one, into sv. */
static void read_debug_file(const char *path, const struct elf_facts *facts, struct symvec *sv)
{
	char p[1024];
	struct elf_facts df;
	if (facts->build_id_len >= 2) {
		int w = snprintf(p, sizeof p, DEBUG_DIR "/.build-id/%02x/", facts->build_id[0]);
		for (size_t i = 1; i < facts->build_id_len && w > 0 && (size_t)w + 3 < sizeof p; i++)
			w += snprintf(p + w, sizeof p - (size_t)w, "%02x", facts->build_id[i]);
		if (w > 0 && (size_t)w + 7 < sizeof p) {
			memcpy(p + w, ".debug", 7);
			if (read_elf(p, sv, NULL, &df) == 0 && df.has_symtab)
				return;
		}
	}
	if (facts->debuglink[0]) {
		const char *slash = strrchr(path, '/');
		int dl = slash ? (int)(slash - path) : 0;
		const char *dirs[] = {"", "/.debug", NULL}; /* next to it, in .debug/, under DEBUG_DIR */
		for (size_t i = 0; i < 3; i++) {
			int w = dirs[i] ? snprintf(p, sizeof p, "%.*s%s/%s", dl, path, dirs[i], facts->debuglink)
					: snprintf(p, sizeof p, DEBUG_DIR "%.*s/%s", dl, path, facts->debuglink);
			if (w <= 0 || (size_t)w >= sizeof p || strcmp(p, path) == 0)
				continue;
			if (access(p, R_OK) == 0 && read_elf(p, sv, NULL, &df) == 0 && df.has_symtab)
				return;
		}
	}
}

static struct efile *load_file(const char *path)
{
	for (size_t i = 0; i < nfiles; i++)
		if (strcmp(files[i]->path, path) == 0)
			return files[i];
	if (nfiles == MAX_FILES)
		return NULL;
	struct efile *f = calloc(1, sizeof *f);
	if (!f || !(f->path = strdup(path))) {
		free(f);
		return NULL;
	}
	static int elf_ready;
	if (!elf_ready) {
		elf_version(EV_CURRENT);
		elf_ready = 1;
	}
	struct symvec sv = {0};
	struct elf_facts facts;
	if (read_elf(path, &sv, f, &facts) == 0 && !facts.has_symtab)
		read_debug_file(path, &facts, &sv);
	for (size_t i = 0; i < sv.n; i++)
		sv.v[i].name = sv.names + (uintptr_t)sv.v[i].name;
	if (sv.n)
		qsort(sv.v, sv.n, sizeof sv.v[0], sym_cmp);
	f->syms = sv.v;
	f->nsyms = sv.n;
	f->names = sv.names;
	files[nfiles++] = f;
	return f;
}

/* The function of f containing link-time address v, or NULL. */
static const char *file_func(const struct efile *f, uint64_t v)
{
	size_t lo = 0, hi = f->nsyms;
	while (lo < hi) { /* first symbol with addr > v */
		size_t mid = (lo + hi) / 2;
		if (f->syms[mid].addr <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	const char *unsized = NULL;
	for (size_t i = lo, k = 0; i-- > 0 && k < 8; k++) {
		const struct sym *s = &f->syms[i];
		if (s->size && v < s->addr + s->size)
			return s->name;
		if (!s->size && !unsized && k == 0)
			unsized = s->name; /* nearest symbol without a size */
	}
	return unsized;
}

/* ---- processes ---- */

struct tg_sym_proc *tg_sym_proc_new(pid_t pid)
{
	struct tg_sym_proc *p = calloc(1, sizeof *p);
	if (p)
		p->pid = pid;
	return p;
}

void tg_sym_proc_free(struct tg_sym_proc *p)
{
	if (p)
		free(p->maps);
	free(p);
}

static time_t mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* Reads the executable file mappings of the process. Returns 0 or -1. */
static int read_maps(struct tg_sym_proc *p)
{
	char path[64], line[4096];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)p->pid);
	p->read_at = mono_s();
	p->read_once = 1;
	FILE *fp = fopen(path, "re");
	if (!fp)
		return -1;
	struct map *v = NULL;
	size_t n = 0, cap = 0;
	while (fgets(line, sizeof line, fp)) {
		unsigned long long start, end, off;
		char perms[8];
		int pathpos = 0;
		if (sscanf(line, "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &pathpos) < 4 ||
		    !pathpos || perms[2] != 'x' || (line[pathpos] != '/' && strncmp(line + pathpos, "[vdso]", 6) != 0))
			continue;
		char *file = line + pathpos;
		file[strcspn(file, "\n")] = '\0';
		struct efile *f = load_file(file);
		if (!f)
			continue;
		if (TG_GROW(v, n, cap, 64) < 0)
			break;
		v[n++] = (struct map){.start = start, .end = end, .off = off, .file = f};
	}
	fclose(fp);
	free(p->maps);
	p->maps = v;
	p->nmaps = n;
	return 0;
}

static const struct map *find_map(const struct tg_sym_proc *p, uint64_t addr)
{
	for (size_t i = 0; i < p->nmaps; i++)
		if (addr >= p->maps[i].start && addr < p->maps[i].end)
			return &p->maps[i];
	return NULL;
}

int tg_sym_lookup(struct tg_sym_proc *p, uint64_t addr, const char **func, const char **file, uint64_t *off)
{
	*func = NULL;
	*file = NULL;
	*off = 0;
	const struct map *m = find_map(p, addr);
	if (!m && (!p->read_once || mono_s() != p->read_at)) {
		read_maps(p);
		m = find_map(p, addr);
	}
	if (!m)
		return -1;
	uint64_t o = addr - m->start + m->off;
	*file = m->file->path;
	*off = o;
	for (int i = 0; i < m->file->nsegs; i++) {
		const struct seg *s = &m->file->segs[i];
		if (o >= s->off && o < s->off + s->filesz) {
			*func = file_func(m->file, o - s->off + s->vaddr);
			break;
		}
	}
	return 0;
}

void tg_sym_cleanup(void)
{
	for (size_t i = 0; i < nfiles; i++) {
		free(files[i]->path);
		free(files[i]->syms);
		free(files[i]->names);
		free(files[i]);
	}
	nfiles = 0;
}
