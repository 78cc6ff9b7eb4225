/* C helpers of the compiled core (included by event.pyx): byte scans and the
   string caches. Pure C on bytes; the Python objects live in event.pyx. */
#ifndef ESL_SCAN_H
#define ESL_SCAN_H

#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#if defined(_MSC_VER)
#define ESL_ALIGNED __declspec(align(64))
#else
#define ESL_ALIGNED __attribute__((aligned(64)))
#endif
typedef struct { PyObject *s; uint32_t n; uint32_t h; char data[48]; } esl_slot;
static ESL_ALIGNED esl_slot esl_names[1024];
static ESL_ALIGNED esl_slot esl_values[4096];
/* whole header lines -> (name, value); flags: 1 not a pair, 2 Event-Name, 4 Content-Length */
typedef struct { PyObject *name; PyObject *value; uint32_t n; uint32_t h; uint32_t flags;
                 uint32_t pad; char data[96]; } esl_line;
static ESL_ALIGNED esl_line esl_lines[8192];

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
/* Index of the first byte equal to a or b in p[0:n], or n. Header lines
   are short, so an inline 16-byte scan beats a libc call per line. */
static inline Py_ssize_t esl_find2(const char *p, Py_ssize_t n, char a, char b) {
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b);
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        int m = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)));
        if (m) return i + __builtin_ctz(m);
    }
#endif
    for (; i < n; i++) if (p[i] == a || p[i] == b) return i;
    return n;
}

/* Routing keys of a plain header block: [s, e) per key (-1: absent);
   exact-casing and case-insensitive candidates are kept apart. */
typedef struct { Py_ssize_t s[6], e[6], cs[6], ce[6]; Py_ssize_t ihead; } esl_keys;

static inline int esl_key_of(const char *p, Py_ssize_t k, int *exact) {
    const char *lit;
    int which;
    switch (k) {
    case 10: lit = "Event-Name"; which = 0; break;
    case 9: lit = "Unique-ID"; which = 1; break;
    case 8: lit = "Job-UUID"; which = 2; break;
    case 16: lit = "Application-UUID"; which = 3; break;
    case 14:  /* Event-S[u]bclass or Event-S[e]quence */
        if ((p[7] | 0x20) == 'u') { lit = "Event-Subclass"; which = 4; }
        else { lit = "Event-Sequence"; which = 5; }
        break;
    default: return -1;
    }
    if (memcmp(p, lit, (size_t)k) == 0) { *exact = 1; return which; }
    *exact = 0;
    return strncasecmp(p, lit, (size_t)k) == 0 ? which : -1;
}

/* One non-empty line [ls, le): record it if it is a routing key. */
static inline void esl_line_key(const char *base, Py_ssize_t ls, Py_ssize_t le, esl_keys *k) {
    unsigned char c = (unsigned char)base[ls] | 0x20;
    if (c != 'e' && c != 'u' && c != 'j' && c != 'a') return;
    Py_ssize_t n = le - ls, lim = n < 17 ? n : 17, colon = 0;
    while (colon < lim && base[ls + colon] != ':') colon++;
    if (colon >= lim) return;
    int exact, w = esl_key_of(base + ls, colon, &exact);
    if (w < 0) return;
    Py_ssize_t vs = ls + colon + 1;
    while (vs < le && base[vs] == ' ') vs++;
    if (exact) {
        if (w == 0 || k->s[w] < 0) { k->s[w] = vs; k->e[w] = le; }  /* Event-Name: last wins */
    } else if (k->cs[w] < 0) {
        k->cs[w] = vs; k->ce[w] = le;
    }
}

/* Walk the lines of the inner event base[bs:e] up to its first blank line,
   16 bytes at a time, noting the routing keys. */
static void esl_scan_plain(const char *base, Py_ssize_t bs, Py_ssize_t e, esl_keys *k) {
    Py_ssize_t ls = bs, i = bs, j;
    int w;
    for (w = 0; w < 6; w++) k->s[w] = k->e[w] = k->cs[w] = k->ce[w] = -1;
    k->ihead = -1;
#if defined(__SSE2__)
    const __m128i nl = _mm_set1_epi8(10);  /* newline */
    for (; i + 16 <= e; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(base + i)), nl));
        while (m) {
            j = i + __builtin_ctz(m);
            m &= m - 1;
            if (j == ls) {
                if (ls > bs) { k->ihead = ls - 1; goto done; }
            } else {
                esl_line_key(base, ls, j, k);
            }
            ls = j + 1;
        }
    }
#endif
    for (; i < e; i++) {
        if (base[i] != 10) continue;
        j = i;
        if (j == ls) {
            if (ls > bs) { k->ihead = ls - 1; goto done; }
        } else {
            esl_line_key(base, ls, j, k);
        }
        ls = j + 1;
    }
    if (ls < e) esl_line_key(base, ls, e, k);
done:
    for (w = 0; w < 6; w++)
        if (k->s[w] < 0 && k->cs[w] >= 0) { k->s[w] = k->cs[w]; k->e[w] = k->ce[w]; }
}

#if defined(__GNUC__) || defined(__clang__)
#define esl_prefetch(p) __builtin_prefetch((const void *)(p))
#else
#define esl_prefetch(p) ((void)0)
#endif

#endif /* ESL_SCAN_H */
