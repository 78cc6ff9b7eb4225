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

#if defined(__GNUC__) || defined(__clang__)
/* the plain scan is the hot one: its helpers inlined, the json/xml scans kept out of it */
#define ESL_INLINE static inline __attribute__((always_inline))
#define ESL_NOINLINE static __attribute__((noinline))
#else
#define ESL_INLINE static inline
#define ESL_NOINLINE static
#endif

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

ESL_INLINE int esl_key_of(const char *p, Py_ssize_t k, int *exact) {
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
ESL_INLINE void esl_line_key(const char *base, Py_ssize_t ls, Py_ssize_t le, esl_keys *k) {
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

/* -- json and xml events -------------------------------------------------
   The keys are found on the bytes when the payload has exactly the shape
   FreeSWITCH writes; anything else returns -1 and the caller asks the full
   decode (esl._codec), which also reports malformed payloads. A key's start
   is -2 when only the full decode can give its value. */

static inline void esl_keys_init(esl_keys *k) {
    for (int w = 0; w < 6; w++) k->s[w] = k->e[w] = k->cs[w] = k->ce[w] = -1;
    k->ihead = -1;
}

/* A value [vs, ve) (vs -2: unsure) of key w, with get()'s semantics: exact
   names first (Event-Name the last one, the others the first one). */
static inline void esl_note(esl_keys *k, int w, int exact, Py_ssize_t vs, Py_ssize_t ve) {
    if (!exact) k->cs[w] = 0;  /* a case variant: used only when no exact name */
    else if (w == 0 || k->s[w] == -1) { k->s[w] = vs; k->e[w] = ve; }
}

static inline void esl_keys_done(esl_keys *k) {
    for (int w = 0; w < 6; w++)
        if (k->s[w] == -1 && k->cs[w] == 0) k->s[w] = -2;  /* case-insensitive: full decode */
}

static inline Py_ssize_t esl_ws(const char *p, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) i++;
    return i;
}

static inline int esl_hex(char c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

/* The json string opening at p[i] == '"': the index after its closing quote,
   or -1 when it is not one Python's json accepts; *esc: it has escapes. */
static Py_ssize_t esl_json_str(const char *p, Py_ssize_t i, Py_ssize_t n, int *esc) {
    *esc = 0;
    for (i++; i < n; i++) {
        i += esl_find2(p + i, n - i, '"', '\\');
        if (i >= n) return -1;
        if (p[i] == '"') return i + 1;
        *esc = 1;
        if (++i >= n) return -1;
        if (p[i] == 'u') {
            if (i + 4 >= n || !esl_hex(p[i + 1]) || !esl_hex(p[i + 2]) || !esl_hex(p[i + 3])
                || !esl_hex(p[i + 4])) return -1;
            i += 4;
        } else if (!memchr("\"\\/bfnrt", p[i], 8)) {
            return -1;
        }
    }
    return -1;
}

/* Routing keys of a json event p[i:n]: cJSON_PrintUnformatted's
   {"Name":"value",...}, values strings or arrays of strings. The whole
   object is checked, so every key seen is a real key and a payload
   json.loads would refuse goes to the full decode. A key with escapes
   fails the scan (its text is unknown here); a routing value with escapes
   or an array is -2. */
ESL_NOINLINE int esl_scan_json(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k) {
    Py_ssize_t ks, ke, vs, ve;
    int esc, exact, w;
    esl_keys_init(k);
    i = esl_ws(p, i, n);
    if (i >= n || p[i] != '{') return -1;
    i = esl_ws(p, i + 1, n);
    if (i < n && p[i] == '}') goto close;  /* {} */
    for (;;) {
        if (i >= n || p[i] != '"') return -1;
        ks = i + 1;
        i = esl_json_str(p, i, n, &esc);
        if (i < 0 || esc) return -1;
        ke = i - 1;
        i = esl_ws(p, i, n);
        if (i >= n || p[i] != ':') return -1;
        i = esl_ws(p, i + 1, n);
        if (i >= n) return -1;
        vs = i + 1;
        if (p[i] == '"') {
            i = esl_json_str(p, i, n, &esc);
            if (i < 0) return -1;
            ve = i - 1;
            if (esc) vs = -2;
        } else if (p[i] == '[') {
            vs = ve = -2;
            i = esl_ws(p, i + 1, n);
            if (i < n && p[i] == ']') {
                i++;
            } else {
                for (;;) {
                    if (i >= n || p[i] != '"') return -1;
                    i = esl_json_str(p, i, n, &esc);
                    if (i < 0) return -1;
                    i = esl_ws(p, i, n);
                    if (i < n && p[i] == ']') { i++; break; }
                    if (i >= n || p[i] != ',') return -1;
                    i = esl_ws(p, i + 1, n);
                }
            }
        } else {
            return -1;  /* numbers, objects...: the full decode */
        }
        w = esl_key_of(p + ks, ke - ks, &exact);
        if (w >= 0) esl_note(k, w, exact, vs, ve);
        i = esl_ws(p, i, n);
        if (i < n && p[i] == ',') { i = esl_ws(p, i + 1, n); continue; }
        if (i < n && p[i] == '}') break;
        return -1;
    }
close:
    if (esl_ws(p, i + 1, n) != n) return -1;  /* json.loads: "Extra data" */
    esl_keys_done(k);
    return 0;
}

static inline int esl_lit(const char *p, Py_ssize_t i, Py_ssize_t n, const char *lit, Py_ssize_t m) {
    return i + m <= n && memcmp(p + i, lit, (size_t)m) == 0;
}

/* Routing keys of an xml event p[i:n], switch_event_xmlize's layout:
   <event> <headers> <Name>value</Name>... </headers>, whitespace between.
   Values are percent-encoded then xml-escaped, so '<' ends a value. Only
   the headers element is read, each element exactly <Name>value</Name>.
   A routing value with '&' (an entity), with '%' next to non-ASCII bytes
   (decoded as text by the twin), or repeated in the next element (an
   array: one element per item) is -2. */
ESL_NOINLINE int esl_scan_xml(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k) {
    Py_ssize_t ns, nl, vs, ve, pns = 0, pnl = 0, pvs = -1, j;
    int exact, w, hi;
    unsigned char c;
    esl_keys_init(k);
    i = esl_ws(p, i, n);
    if (!esl_lit(p, i, n, "<event>", 7)) return -1;
    i = esl_ws(p, i + 7, n);
    if (!esl_lit(p, i, n, "<headers>", 9)) return -1;
    for (i += 9;; i = ve + nl + 3) {
        i = esl_ws(p, i, n);
        if (i + 1 >= n || p[i] != '<') return -1;
        if (p[i + 1] == '/') {
            if (esl_lit(p, i, n, "</headers>", 10)) break;
            return -1;
        }
        for (ns = j = i + 1; j < n; j++) {
            c = (unsigned char)p[j];
            if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '/' || c == '!' || c == '?') break;
        }
        nl = j - ns;
        if (nl == 0 || j >= n || p[j] != '>') return -1;
        vs = j + 1;
        const char *lt = (const char *)memchr(p + vs, '<', (size_t)(n - vs));
        if (lt == NULL) return -1;
        ve = lt - p;
        if (ve + nl + 3 > n || p[ve + 1] != '/' || memcmp(p + ve + 2, p + ns, (size_t)nl) != 0
            || p[ve + nl + 2] != '>') return -1;
        w = esl_key_of(p + ns, nl, &exact);
        if (w >= 0) {
            if (nl == pnl && memcmp(p + ns, p + pns, (size_t)nl) == 0) {
                /* the array goes on: the pair of the previous element changes */
                if (exact && (w == 0 || k->s[w] == pvs)) k->s[w] = -2;
            } else {
                for (hi = 0, j = vs; j < ve; j++) hi |= (unsigned char)p[j] >= 0x80;
                if (memchr(p + vs, '&', (size_t)(ve - vs))
                    || (hi && memchr(p + vs, '%', (size_t)(ve - vs)))) esl_note(k, w, exact, -2, -2);
                else esl_note(k, w, exact, vs, ve);
            }
        }
        pns = ns; pnl = nl; pvs = vs;
    }
    esl_keys_done(k);
    return 0;
}

#if defined(__GNUC__) || defined(__clang__)
#define esl_prefetch(p) __builtin_prefetch((const void *)(p))
#else
#define esl_prefetch(p) ((void)0)
#endif

#endif /* ESL_SCAN_H */
