/* JSON for the agent: a small writer for response heads, and a reader that
 * understands just the runtime config ({"kind": str, "argv": [str...], any
 * other keys skipped}). The reader is strict about syntax so a corrupt config
 * is reported in PING instead of starting something half-parsed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static void jb_grow(struct jbuf *b, size_t extra)
{
	if (b->oom || b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	jb_grow(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void jb_puts(struct jbuf *b, const char *s) { jb_raw(b, s, strlen(s)); }

void jb_fmt(struct jbuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		jb_raw(b, tmp, (size_t)n);
		return;
	}
	jb_grow(b, (size_t)n);
	if (b->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Invalid UTF-8 (file names, command lines are just bytes) becomes U+FFFD so
 * the head always parses on the host. */
static size_t utf8_valid(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t need;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < need)
		return 0;
	unsigned cp = c & (0xff >> (need + 1));
	for (size_t i = 1; i < need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return need;
}

void jb_strn(struct jbuf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	jb_raw(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned c = u[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			jb_raw(b, e, 2);
			i++;
		} else if (c < 0x20) {
			jb_fmt(b, "\\u%04x", c);
			i++;
		} else {
			size_t k = utf8_valid(u + i, n - i);
			if (k == 0) {
				jb_raw(b, "\xef\xbf\xbd", 3);
				i++;
			} else {
				jb_raw(b, s + i, k);
				i += k;
			}
		}
	}
	jb_raw(b, "\"", 1);
}

void jb_str(struct jbuf *b, const char *s)
{
	if (!s)
		jb_puts(b, "null");
	else
		jb_strn(b, s, strlen(s));
}

void jb_free(struct jbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- reader ---- */

struct rd {
	const char *s;
	const char *err;
};

static void ws(struct rd *r)
{
	while (*r->s == ' ' || *r->s == '\t' || *r->s == '\n' || *r->s == '\r')
		r->s++;
}

static int hex4(const char *s, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = s[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(struct jbuf *b, unsigned cp)
{
	char o[4];
	size_t n;
	if (cp < 0x80) {
		o[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		o[0] = (char)(0xf0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	jb_raw(b, o, n);
}

/* Parses a string at r->s; returns it malloc'd (out may be NULL to skip). */
static int rd_string(struct rd *r, char **out)
{
	struct jbuf b = {0};
	if (*r->s != '"') {
		r->err = "expected string";
		return -1;
	}
	r->s++;
	jb_raw(&b, "", 0);
	for (;;) {
		unsigned char c = (unsigned char)*r->s;
		if (c == 0 || c < 0x20) {
			r->err = "unterminated string";
			goto fail;
		}
		r->s++;
		if (c == '"')
			break;
		if (c != '\\') {
			jb_raw(&b, (const char *)&c, 1);
			continue;
		}
		char e = *r->s++;
		unsigned cp;
		switch (e) {
		case '"': case '\\': case '/':
			jb_raw(&b, &e, 1);
			break;
		case 'b': jb_raw(&b, "\b", 1); break;
		case 'f': jb_raw(&b, "\f", 1); break;
		case 'n': jb_raw(&b, "\n", 1); break;
		case 'r': jb_raw(&b, "\r", 1); break;
		case 't': jb_raw(&b, "\t", 1); break;
		case 'u':
			if (hex4(r->s, &cp))
				goto bad;
			r->s += 4;
			if (cp >= 0xd800 && cp < 0xdc00 && r->s[0] == '\\' && r->s[1] == 'u') {
				unsigned lo;
				if (hex4(r->s + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					r->s += 6;
				}
			}
			if (cp == 0)
				goto bad; /* argv strings cannot hold NUL */
			put_utf8(&b, cp);
			break;
		default:
			goto bad;
		}
	}
	if (b.oom) {
		r->err = "out of memory";
		goto fail;
	}
	if (out)
		*out = b.p;
	else
		jb_free(&b);
	return 0;
bad:
	r->err = "bad escape in string";
fail:
	jb_free(&b);
	return -1;
}

static int rd_skip(struct rd *r, int depth);

static int rd_skip_container(struct rd *r, char close, int depth)
{
	r->s++;
	ws(r);
	if (*r->s == close) {
		r->s++;
		return 0;
	}
	for (;;) {
		ws(r);
		if (close == '}') {
			if (rd_string(r, NULL))
				return -1;
			ws(r);
			if (*r->s++ != ':') {
				r->err = "expected ':'";
				return -1;
			}
		}
		if (rd_skip(r, depth + 1))
			return -1;
		ws(r);
		if (*r->s == ',') {
			r->s++;
			continue;
		}
		if (*r->s == close) {
			r->s++;
			return 0;
		}
		r->err = "expected ',' or end of container";
		return -1;
	}
}

static int rd_skip(struct rd *r, int depth)
{
	ws(r);
	if (depth > 64) {
		r->err = "nested too deeply";
		return -1;
	}
	char c = *r->s;
	if (c == '"')
		return rd_string(r, NULL);
	if (c == '{')
		return rd_skip_container(r, '}', depth);
	if (c == '[')
		return rd_skip_container(r, ']', depth);
	static const char *lits[] = {"true", "false", "null"};
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(lits[i]);
		if (strncmp(r->s, lits[i], n) == 0) {
			r->s += n;
			return 0;
		}
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		char *end;
		strtod(r->s, &end);
		r->s = end;
		return 0;
	}
	r->err = "unexpected character";
	return -1;
}

static void free_argv(char **argv)
{
	if (!argv)
		return;
	for (char **p = argv; *p; p++)
		free(*p);
	free(argv);
}

static int rd_argv(struct rd *r, char ***out)
{
	size_t n = 0;
	char **v = calloc(1, sizeof *v);
	if (!v)
		return -1;
	if (*r->s != '[') {
		r->err = "argv must be an array of strings";
		goto fail;
	}
	r->s++;
	ws(r);
	if (*r->s == ']') {
		r->s++;
		*out = v;
		return 0;
	}
	for (;;) {
		ws(r);
		char *s;
		if (rd_string(r, &s))
			goto fail;
		char **nv = realloc(v, (n + 2) * sizeof *v);
		if (!nv) {
			free(s);
			goto fail;
		}
		v = nv;
		v[n++] = s;
		v[n] = NULL;
		ws(r);
		if (*r->s == ',') {
			r->s++;
			continue;
		}
		if (*r->s++ == ']')
			break;
		r->err = "expected ',' or ']'";
		goto fail;
	}
	*out = v;
	return 0;
fail:
	free_argv(v);
	return -1;
}

int rtconfig_parse(const char *text, char **kind, char ***argv, char *err, size_t errlen)
{
	struct rd r = {text, NULL};
	*kind = NULL;
	*argv = NULL;
	ws(&r);
	if (*r.s != '{') {
		r.err = "config must be a JSON object";
		goto fail;
	}
	r.s++;
	ws(&r);
	if (*r.s == '}')
		r.s++;
	else
		for (;;) {
			char *key;
			ws(&r);
			if (rd_string(&r, &key))
				goto fail;
			ws(&r);
			if (*r.s++ != ':') {
				free(key);
				r.err = "expected ':'";
				goto fail;
			}
			ws(&r);
			int rc;
			if (strcmp(key, "kind") == 0) {
				free(*kind);
				rc = rd_string(&r, kind);
			} else if (strcmp(key, "argv") == 0) {
				free_argv(*argv);
				*argv = NULL;
				rc = rd_argv(&r, argv);
			} else {
				rc = rd_skip(&r, 0);
			}
			free(key);
			if (rc)
				goto fail;
			ws(&r);
			if (*r.s == ',') {
				r.s++;
				continue;
			}
			if (*r.s++ == '}')
				break;
			r.err = "expected ',' or '}'";
			goto fail;
		}
	ws(&r);
	if (*r.s) {
		r.err = "trailing data after object";
		goto fail;
	}
	if (!*kind) {
		r.err = "missing \"kind\"";
		goto fail;
	}
	if (!*argv || !(*argv)[0]) {
		r.err = "missing or empty \"argv\"";
		goto fail;
	}
	return 0;
fail:
	snprintf(err, errlen, "%s at offset %zu", r.err ? r.err : "out of memory", (size_t)(r.s - text));
	free(*kind);
	free_argv(*argv);
	*kind = NULL;
	*argv = NULL;
	return -1;
}
