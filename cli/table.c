/*
 * A small table printer: rows of strings, each column padded to its widest
 * cell (counted in UTF-8 characters), two spaces between columns, and no
 * trailing blanks.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli.h"

int ol__table_init(struct ol__table *t, size_t ncols,
                   const char *const *headers)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    return ol__table_add(t, headers);
}

int ol__table_add(struct ol__table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **nc = realloc(t->cells, cap * t->ncols * sizeof *nc);

        if (nc == NULL)
            return OL_ENOMEM;
        t->cells = nc;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        char *s = strdup(cells[i] ? cells[i] : "");

        if (s == NULL) {
            while (i--)
                free(t->cells[t->nrows * t->ncols + i]);
            return OL_ENOMEM;
        }
        t->cells[t->nrows * t->ncols + i] = s;
    }
    t->nrows++;
    return 0;
}

/* Display width: UTF-8 continuation bytes do not count. */
static size_t width_of(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

void ol__table_print(const struct ol__table *t, FILE *f)
{
    size_t *w = calloc(t->ncols ? t->ncols : 1, sizeof *w);

    if (w == NULL)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = width_of(t->cells[r * t->ncols + c]);

            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        char **row = t->cells + r * t->ncols;
        size_t last = t->ncols;

        /* Stop at the last non-empty cell: no trailing blanks. */
        while (last > 1 && row[last - 1][0] == '\0')
            last--;
        for (size_t c = 0; c < last; c++) {
            fputs(row[c], f);
            if (c + 1 < last)
                fprintf(f, "%*s", (int)(w[c] - width_of(row[c]) + 2), "");
        }
        fputc('\n', f);
    }
    free(w);
}

void ol__table_free(struct ol__table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}
