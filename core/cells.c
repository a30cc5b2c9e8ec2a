/*
 * cells.c - fixed-size cells carved from 2 MiB chunks the kernel may
 * back with huge pages.
 *
 * Key records are what a check reads after the store's table: at a
 * million keys each is a cache miss, and from malloc's 4 KiB pages also
 * a TLB miss whose page walk misses the cache too (measured: the p99 of
 * a check at a million keys halves when records sit on huge pages).
 *
 * A chunk starts with its header; the cells follow.  Chunks are 2 MiB
 * aligned, so a cell finds its chunk by masking its address.  Chunks
 * with free cells are on a list; a chunk whose cells are all free is
 * given back to the kernel, except one kept for the next allocations (a
 * store reloading a million keys frees them all, then makes them again).
 *
 * One mutex: cells are allocated when a store loads or a lookup builds a
 * record, never on the cached check path, and the critical section is a
 * few pointer moves.
 *
 * Under AddressSanitizer cells are plain aligned_alloc() blocks, so that
 * a use after free is still caught.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#define CHUNK KG__HP_CHUNK

struct cell {
    struct cell *next;
};

struct chunk {
    struct chunk *prev, *next;   /* the list of chunks with free cells */
    struct cell *free;           /* freed cells of this chunk */
    size_t used;                 /* cells handed out */
    size_t carved;               /* cells ever handed out (from the top) */
    size_t ncells;
    size_t size;
    int listed;
};

void *kg__hp_chunk_new(void)
{
    size_t len = 2 * CHUNK;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uintptr_t a;
    if (p == MAP_FAILED)
        return NULL;
    /* Map twice the size and trim: the kernel only backs a 2 MiB aligned
     * range with a huge page. */
    a = ((uintptr_t)p + CHUNK - 1) & ~(uintptr_t)(CHUNK - 1);
    if ((char *)a > p)
        munmap(p, (size_t)((char *)a - p));
    if ((char *)a + CHUNK < p + len)
        munmap((char *)a + CHUNK, (size_t)(p + len - ((char *)a + CHUNK)));
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)a, CHUNK, MADV_HUGEPAGE);
#endif
    KG__LSAN_ROOT((void *)a, CHUNK);
    return (void *)a;
}

void kg__hp_chunk_free(void *chunk)
{
    if (chunk != NULL) {
        KG__LSAN_UNROOT(chunk, CHUNK);
        munmap(chunk, CHUNK);
    }
}

#if !KG__SANITIZED

static size_t header_bytes(size_t size)
{
    return (sizeof(struct chunk) + size - 1) / size * size;
}

static void unlist(kg__cells *c, struct chunk *k)
{
    if (!k->listed)
        return;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->partial = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    k->listed = 0;
}

static void list(kg__cells *c, struct chunk *k)
{
    if (k->listed)
        return;
    k->prev = NULL;
    k->next = c->partial;
    if (c->partial)
        c->partial->prev = k;
    c->partial = k;
    k->listed = 1;
}

static struct chunk *chunk_make(size_t size)
{
    struct chunk *k = kg__hp_chunk_new();
    if (k == NULL)
        return NULL;
    memset(k, 0, sizeof(*k));
    k->size = size;
    k->ncells = (CHUNK - header_bytes(size)) / size;
    return k;
}

void *kg__cells_alloc(kg__cells *c)
{
    struct chunk *k;
    void *p = NULL;

    pthread_mutex_lock(&c->lock);
    k = c->partial;
    if (k == NULL) {
        if ((k = c->spare) != NULL)
            c->spare = NULL;
        else if ((k = chunk_make(c->size)) == NULL)
            goto out;
        c->chunks++;
        list(c, k);
    }
    if (k->free != NULL) {
        p = k->free;
        k->free = k->free->next;
    } else {
        p = (char *)k + header_bytes(k->size) + k->carved * k->size;
        k->carved++;
    }
    k->used++;
    if (k->free == NULL && k->carved == k->ncells)
        unlist(c, k);
    c->used++;
out:
    pthread_mutex_unlock(&c->lock);
    return p;
}

void kg__cells_free(kg__cells *c, void *p)
{
    struct chunk *k;
    struct cell *cell = p;

    if (p == NULL)
        return;
    k = (struct chunk *)((uintptr_t)p & ~(uintptr_t)(CHUNK - 1));
    pthread_mutex_lock(&c->lock);
    cell->next = k->free;
    k->free = cell;
    k->used--;
    c->used--;
    if (k->used == 0) {
        /* Empty: keep one for the next allocations, give the rest back. */
        unlist(c, k);
        c->chunks--;
        k->free = NULL;
        k->carved = 0;
        if (c->spare == NULL) {
            c->spare = k;
            k = NULL;
        }
    } else {
        list(c, k);
        k = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    kg__hp_chunk_free(k);
}

#else  /* KG__SANITIZED */

void *kg__cells_alloc(kg__cells *c)
{
    void *p = aligned_alloc(c->size, c->size);
    if (p != NULL) {
        pthread_mutex_lock(&c->lock);
        c->used++;
        pthread_mutex_unlock(&c->lock);
    }
    return p;
}

void kg__cells_free(kg__cells *c, void *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->used--;
    pthread_mutex_unlock(&c->lock);
    free(p);
}

#endif

void kg__cells_stats(kg__cells *c, size_t *used_r, size_t *chunks_r)
{
    pthread_mutex_lock(&c->lock);
    if (used_r)
        *used_r = c->used;
    if (chunks_r)
        *chunks_r = c->chunks + (c->spare != NULL);
    pthread_mutex_unlock(&c->lock);
}
