/* Request payload fields (u8 key, u32le len, bytes). Parsed once on the
 * reader thread so a malformed frame is rejected before any work starts;
 * fields point into the payload, which the request owns. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int tlv_parse(struct req *r)
{
	size_t n = 0;
	for (uint32_t off = 0; off < r->len;) {
		if (r->len - off < 5)
			return -1;
		uint32_t flen = le32(r->payload + off + 1);
		if (flen > r->len - off - 5)
			return -1;
		off += 5 + flen;
		n++;
	}
	r->fields = calloc(n ? n : 1, sizeof *r->fields);
	if (!r->fields)
		return -1;
	r->nfields = n;
	size_t i = 0;
	for (uint32_t off = 0; off < r->len; i++) {
		struct field *f = &r->fields[i];
		f->key = r->payload[off];
		f->len = le32(r->payload + off + 1);
		f->val = r->payload + off + 5;
		off += 5 + f->len;
		/* Text fields become C strings; an embedded NUL would silently
		 * shorten a path, so it makes the frame malformed instead. */
		int binary = f->key == F_STDIN || f->key == F_DATA || f->key == F_ENTROPY;
		if (!binary && memchr(f->val, 0, f->len))
			return -1;
	}
	return 0;
}

const struct field *req_field(const struct req *r, uint8_t key)
{
	for (size_t i = 0; i < r->nfields; i++)
		if (r->fields[i].key == key)
			return &r->fields[i];
	return NULL;
}

char *req_str(const struct req *r, uint8_t key)
{
	const struct field *f = req_field(r, key);
	if (!f)
		return NULL;
	return strndup((const char *)f->val, f->len);
}

int req_u64(const struct req *r, uint8_t key, uint64_t *out)
{
	const struct field *f = req_field(r, key);
	if (!f)
		return 0;
	if (f->len == 0 || f->len > 20)
		return -1;
	uint64_t v = 0;
	for (uint32_t i = 0; i < f->len; i++) {
		uint8_t c = f->val[i];
		if (c < '0' || c > '9')
			return -1;
		uint64_t nv = v * 10 + (uint64_t)(c - '0');
		if (nv / 10 != v)
			return -1;
		v = nv;
	}
	*out = v;
	return 1;
}

int req_flag(const struct req *r, uint8_t key)
{
	const struct field *f = req_field(r, key);
	return f && f->len == 1 && f->val[0] == '1';
}

void req_free(struct req *r)
{
	if (!r)
		return;
	free(r->fields);
	free(r->payload);
	free(r);
}
