#ifndef TALLY_COUNT_H
#define TALLY_COUNT_H

#include <stddef.h>

struct counts {
	size_t lines;
	size_t words;
	size_t bytes;
};

/* Adds the counts of buf[0..n) to c; *in_word carries a word across calls. */
void count_buffer(struct counts *c, const char *buf, size_t n, int *in_word);

#endif
