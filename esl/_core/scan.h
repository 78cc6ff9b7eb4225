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
/* json and xml pairs ("Name":"value", <Name>value</Name>) -> (name, value): flags 16 json, 32 xml */
static ESL_ALIGNED esl_line esl_pairs[4096];

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

/* Hex digit values (-1: not one), for the percent decoding. */
static const signed char esl_hexv[256] = {
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,  0, 1, 2, 3, 4, 5, 6, 7, 8, 9,-1,-1,-1,-1,-1,-1,
    -1,10,11,12,13,14,15,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,10,11,12,13,14,15,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,
    -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1, -1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1};

/* Percent-decode p[0:n] into out (n bytes of room): "%XX" becomes its byte, a
   malformed '%' stays, '+' stays. Runs without '%' are copied whole. Returns
   the decoded length. */
static Py_ssize_t esl_unescape(const char *p, Py_ssize_t n, char *out) {
    Py_ssize_t i = 0, m = 0, run;
    int hi, lo;
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c != '%') {
            /* long runs go whole; the short ones between escapes byte by byte */
            if (i + 16 <= n && p[i + 1] != '%' && p[i + 2] != '%' && p[i + 3] != '%') {
                run = esl_find2(p + i, n - i, '%', '%');
                memcpy(out + m, p + i, (size_t)run);
                m += run;
                i += run;
            } else {
                out[m++] = (char)c;
                i++;
            }
            continue;
        }
        if (i + 2 < n && (hi = esl_hexv[(unsigned char)p[i + 1]]) >= 0
            && (lo = esl_hexv[(unsigned char)p[i + 2]]) >= 0) {
            out[m++] = (char)(hi << 4 | lo);
            i += 3;
        } else {
            out[m++] = '%';
            i++;
        }
    }
    return m;
}

/* The keys located by the scans: the routing keys (0-5) and the channel
   fields (6-15); [s, e) per key (-1: absent); exact-casing and
   case-insensitive candidates are kept apart. */
#define ESL_NKEYS 16
/* 32-bit offsets: the caller scans only frames under 2 GiB */
typedef struct { int32_t s[ESL_NKEYS], e[ESL_NKEYS], cs[ESL_NKEYS], ce[ESL_NKEYS]; Py_ssize_t ihead; } esl_keys;

/* Which key the name p[0:k] is (-1: none); *exact: same casing. */
ESL_INLINE int esl_key_of(const char *p, Py_ssize_t k, int *exact) {
    const char *lit;
    int which;
    unsigned char c = (unsigned char)p[0] | 0x20;
    switch (k) {
    case 10:
        if (c == 'e') { lit = "Event-Name"; which = 0; }
        else if (c == 'd') { lit = "DTMF-Digit"; which = 12; }
        else return -1;
        break;
    case 9: lit = "Unique-ID"; which = 1; break;
    case 8: lit = "Job-UUID"; which = 2; break;
    case 16:  /* Application-[U]UID or Application-[D]ata */
        if (((unsigned char)p[12] | 0x20) == 'u') { lit = "Application-UUID"; which = 3; }
        else { lit = "Application-Data"; which = 15; }
        break;
    case 14:  /* Event-S[u]bclass or Event-S[e]quence */
        if ((p[7] | 0x20) == 'u') { lit = "Event-Subclass"; which = 4; }
        else { lit = "Event-Sequence"; which = 5; }
        break;
    case 13: lit = "Channel-State"; which = 6; break;
    case 20:  /* [C]hannel-State-Number or [A]pplication-Response */
        if (c == 'c') { lit = "Channel-State-Number"; which = 7; }
        else { lit = "Application-Response"; which = 14; }
        break;
    case 18: lit = "Channel-Call-State"; which = 8; break;
    case 12:  /* [A]nswer-State or [H]angup-Cause */
        if (c == 'a') { lit = "Answer-State"; which = 9; }
        else { lit = "Hangup-Cause"; which = 10; }
        break;
    case 19: lit = "Other-Leg-Unique-ID"; which = 11; break;
    case 11: lit = "Application"; which = 13; break;
    default: return -1;
    }
    if (memcmp(p, lit, (size_t)k) == 0) { *exact = 1; return which; }
    *exact = 0;
    /* most lines that get here are other names of the same length: two bytes rule them out */
    if (c != ((unsigned char)lit[0] | 0x20) || ((unsigned char)p[k - 2] | 0x20) != ((unsigned char)lit[k - 2] | 0x20))
        return -1;
    return strncasecmp(p, lit, (size_t)k) == 0 ? which : -1;
}

/* One non-empty line [ls, le): record it if it is a located key. The value
   ends before a '\r' that ends the line (CRLF-framed messages). */
/* The first eight bytes of a name as a little-endian word, ASCII letters lowercased
   (a prefilter only: esl_key_of makes the exact comparison). */
#define ESL_W8(a, b, c, d, e, f, g, h) \
    ((uint64_t)(a) | (uint64_t)(b) << 8 | (uint64_t)(c) << 16 | (uint64_t)(d) << 24 | \
     (uint64_t)(e) << 32 | (uint64_t)(f) << 40 | (uint64_t)(g) << 48 | (uint64_t)(h) << 56)

ESL_INLINE void esl_line_key(const char *base, Py_ssize_t ls, Py_ssize_t le, esl_keys *k) {
    const char *p = base + ls;
    Py_ssize_t n = le - ls, colon;
    uint64_t w8;
    const signed char *lens;
    static const signed char L_EVENT[] = {10, 14, 0}, L_UNIQ[] = {9, 0}, L_JOB[] = {8, 0},
        L_APPL[] = {11, 16, 20, 0}, L_ANSW[] = {12, 0}, L_CHAN[] = {13, 18, 20, 0},
        L_HANG[] = {12, 0}, L_OTHER[] = {19, 0}, L_DTMF[] = {10, 0};
    int exact, w = -1;
    if (n < 9) return;  /* the shortest key, Job-UUID, and its ':' */
    memcpy(&w8, p, 8);
    w8 |= 0x2020202020202020ULL;
    switch ((unsigned char)p[0] | 0x20) {
    case 'e':
        if ((w8 & 0x0000FFFFFFFFFFFFULL) != ESL_W8('e', 'v', 'e', 'n', 't', '-', 0, 0)) return;
        lens = L_EVENT; break;
    case 'u': if (w8 != ESL_W8('u', 'n', 'i', 'q', 'u', 'e', '-', 'i')) return; lens = L_UNIQ; break;
    case 'j': if (w8 != ESL_W8('j', 'o', 'b', '-', 'u', 'u', 'i', 'd')) return; lens = L_JOB; break;
    case 'a':
        if (w8 == ESL_W8('a', 'p', 'p', 'l', 'i', 'c', 'a', 't')) lens = L_APPL;
        else if (w8 == ESL_W8('a', 'n', 's', 'w', 'e', 'r', '-', 's')) lens = L_ANSW;
        else return;
        break;
    case 'c': if (w8 != ESL_W8('c', 'h', 'a', 'n', 'n', 'e', 'l', '-')) return; lens = L_CHAN; break;
    case 'h': if (w8 != ESL_W8('h', 'a', 'n', 'g', 'u', 'p', '-', 'c')) return; lens = L_HANG; break;
    case 'o': if (w8 != ESL_W8('o', 't', 'h', 'e', 'r', '-', 'l', 'e')) return; lens = L_OTHER; break;
    case 'd': if (w8 != ESL_W8('d', 't', 'm', 'f', '-', 'd', 'i', 'g')) return; lens = L_DTMF; break;
    default: return;
    }
    /* a candidate when ':' sits right after a key's length (shortest first: the name ends at the first ':') */
    for (; (colon = *lens) != 0; lens++) {
        if (colon < n && p[colon] == ':') {
            w = esl_key_of(p, colon, &exact);
            break;
        }
    }
    if (w < 0) return;
    Py_ssize_t vs = ls + colon + 1;
    while (vs < le && base[vs] == ' ') vs++;
    if (le > vs && base[le - 1] == '\r') le--;
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
    for (w = 0; w < ESL_NKEYS; w++) k->s[w] = k->cs[w] = -1;  /* e, ce: read only where s, cs >= 0 */
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
    for (w = 0; w < ESL_NKEYS; w++)
        if (k->s[w] < 0 && k->cs[w] >= 0) { k->s[w] = k->cs[w]; k->e[w] = k->ce[w]; }
}

/* One header of a plain block, looked up without decoding the others: walk
   the lines of p[s:e) (16 bytes at a time, as the key scan) and compare the
   name at each line start. The first line named exactly key[:klen] (the last
   one when `last`) goes to *ls/*le and 1 is returned; else the first line
   whose name matches case-insensitively (ASCII) and 2; else 0. The key holds
   no ':' (the caller checks), so a name matches when its first ':' follows
   the key's bytes. */
ESL_INLINE int esl_hdr_line(const char *p, Py_ssize_t ls, Py_ssize_t le, const char *key, Py_ssize_t klen,
                            unsigned char k0, Py_ssize_t *cls, Py_ssize_t *cle) {
    if (le - ls <= klen || p[ls + klen] != ':' || ((unsigned char)p[ls] | 0x20) != k0) return 0;
    if (memcmp(p + ls, key, (size_t)klen) == 0) return 1;
    if (*cls < 0 && strncasecmp(p + ls, key, (size_t)klen) == 0) { *cls = ls; *cle = le; }
    return 0;
}

static int esl_find_header(const char *p, Py_ssize_t s, Py_ssize_t e, const char *key, Py_ssize_t klen, int last,
                           Py_ssize_t *ls_out, Py_ssize_t *le_out) {
    Py_ssize_t ls = s, i = s, j, cls = -1, cle = -1, found = -1, fle = -1;
    unsigned char k0 = (unsigned char)key[0] | 0x20;
#if defined(__SSE2__)
    const __m128i nl = _mm_set1_epi8(10);
    for (; i + 16 <= e; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl));
        while (m) {
            j = i + __builtin_ctz(m);
            m &= m - 1;
            if (esl_hdr_line(p, ls, j, key, klen, k0, &cls, &cle)) {
                found = ls; fle = j;
                if (!last) goto done;
            }
            ls = j + 1;
        }
    }
#endif
    for (; i < e; i++) {
        if (p[i] != 10) continue;
        if (esl_hdr_line(p, ls, i, key, klen, k0, &cls, &cle)) {
            found = ls; fle = i;
            if (!last) goto done;
        }
        ls = i + 1;
    }
    if (ls < e && esl_hdr_line(p, ls, e, key, klen, k0, &cls, &cle)) { found = ls; fle = e; }
done:
    if (found >= 0) { *ls_out = found; *le_out = fle; return 1; }
    if (cls >= 0) { *ls_out = cls; *le_out = cle; return 2; }
    return 0;
}

/* Whether p[s:e) holds the UTF-8 Kelvin sign (U+212A, which lowercases to 'k'). */
static int esl_has_kelvin(const char *p, Py_ssize_t s, Py_ssize_t e) {
    for (; s + 2 < e; s++) {
        const char *c = (const char *)memchr(p + s, 0xE2, (size_t)(e - s - 2));
        if (c == NULL) return 0;
        s = c - p;
        if ((unsigned char)c[1] == 0x84 && (unsigned char)c[2] == 0xAA) return 1;
    }
    return 0;
}

/* -- json and xml events -------------------------------------------------
   The keys are found on the bytes when the payload has exactly the shape
   FreeSWITCH writes; anything else returns -1 and the caller asks the full
   decode (esl._codec), which also reports malformed payloads. A key's start
   is -2 when only the full decode can give its value. */

/* Where the pairs of a json or xml event lie, for the full decode: one entry
   per pair (kind 0: a string value; kind 1: an array, vs = its item count,
   the items follow as kind-2 entries). esc: the json string has escapes (for
   xml always 0: the decode looks for entities in the values it decodes). */
typedef struct { int32_t ks, ke, vs, ve; uint8_t kind, esc; } esl_ent;  /* 20 bytes: frames under 2 GiB */
typedef struct { esl_ent *ent; Py_ssize_t n, cap; } esl_ents;

/* Record an entry; 0 when the array is full (the caller grows it and scans again). */
static inline int esl_put(esl_ents *o, Py_ssize_t ks, Py_ssize_t ke, Py_ssize_t vs, Py_ssize_t ve, int kind, int esc) {
    if (o->n >= o->cap) return 0;
    esl_ent *e = &o->ent[o->n++];
    e->ks = (int32_t)ks; e->ke = (int32_t)ke; e->vs = (int32_t)vs; e->ve = (int32_t)ve;
    e->kind = (uint8_t)kind; e->esc = (uint8_t)esc;
    return 1;
}

static inline void esl_keys_init(esl_keys *k) {
    for (int w = 0; w < ESL_NKEYS; w++) k->s[w] = k->cs[w] = -1;
    k->ihead = -1;
}

/* A value [vs, ve) (vs -2: unsure) of key w, with get()'s semantics: exact
   names first (Event-Name the last one, the others the first one). */
static inline void esl_note(esl_keys *k, int w, int exact, Py_ssize_t vs, Py_ssize_t ve) {
    if (!exact) k->cs[w] = 0;  /* a case variant: used only when no exact name */
    else if (w == 0 || k->s[w] == -1) { k->s[w] = vs; k->e[w] = ve; }
}

static inline void esl_keys_done(esl_keys *k) {
    for (int w = 0; w < ESL_NKEYS; w++)
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
ESL_INLINE Py_ssize_t esl_json_str(const char *p, Py_ssize_t i, Py_ssize_t n, int *esc) {
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
ESL_NOINLINE int esl_scan_json(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k, esl_ents *o) {
    Py_ssize_t ks, ke, vs, ve, head = 0, items;
    int esc, exact, w, vesc = 0;
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
            if (o && !esl_put(o, ks, ke, vs, ve, 0, esc)) return -3;
            if (esc) vs = -2;
        } else if (p[i] == '[') {
            vs = ve = -2;
            if (o) {
                head = o->n;
                if (!esl_put(o, ks, ke, 0, 0, 1, 0)) return -3;
            }
            items = 0;
            i = esl_ws(p, i + 1, n);
            if (i < n && p[i] == ']') {
                i++;
            } else {
                for (;;) {
                    if (i >= n || p[i] != '"') return -1;
                    Py_ssize_t is = i + 1;
                    i = esl_json_str(p, i, n, &vesc);
                    if (i < 0) return -1;
                    if (o && !esl_put(o, 0, 0, is, i - 1, 2, vesc)) return -3;
                    items++;
                    i = esl_ws(p, i, n);
                    if (i < n && p[i] == ']') { i++; break; }
                    if (i >= n || p[i] != ',') return -1;
                    i = esl_ws(p, i + 1, n);
                }
            }
            if (o) o->ent[head].vs = items;
            if (ke - ks == 5 && memcmp(p + ks, "_body", 5) == 0) return -1;  /* the twin refuses it */
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

/* Bytes an xml element name may hold in the layout FreeSWITCH writes: printable
   ASCII but for < > / ! ? (anything else sends the event to the full decode). */
static const unsigned char esl_xml_namech[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,1,1,1,1,1,1,1,1,1,1,1,1,1,0, 1,1,1,1,1,1,1,1,1,1,1,1,0,1,0,0,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0};

/* a[0:n] == b[0:n] for the short names of xml tags, without a libc call. */
static inline int esl_same(const char *a, const char *b, Py_ssize_t n) {
    uint64_t x, y;
    while (n >= 8) {
        memcpy(&x, a, 8); memcpy(&y, b, 8);
        if (x != y) return 0;
        a += 8; b += 8; n -= 8;
    }
    while (n-- > 0) if (*a++ != *b++) return 0;
    return 1;
}

/* Index of the first byte of p[0:n] an xml element name may not hold (see esl_xml_namech), or n. */
static inline Py_ssize_t esl_xml_name_end(const char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f), lt = _mm_set1_epi8('<'),
                  gt = _mm_set1_epi8('>'), sl = _mm_set1_epi8('/'), ex = _mm_set1_epi8('!'),
                  qm = _mm_set1_epi8('?');
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
        /* signed compares: 0x21..0x7e is the printable ASCII range */
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(x, sp), _mm_cmplt_epi8(x, del));
        __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, lt), _mm_cmpeq_epi8(x, gt)),
                                   _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, sl), _mm_cmpeq_epi8(x, ex)),
                                                _mm_cmpeq_epi8(x, qm)));
        int m = _mm_movemask_epi8(_mm_andnot_si128(bad, ok)) ^ 0xFFFF;
        if (m) return i + __builtin_ctz(m);
    }
#endif
    for (; i < n; i++) if (!esl_xml_namech[(unsigned char)p[i]]) return i;
    return n;
}

/* Whether p[0:n] holds a byte >= 0x80. */
static inline int esl_has_high(const char *p, Py_ssize_t n) {
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= n; i += 16)
        if (_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)))) return 1;
#endif
    for (; i < n; i++) if ((unsigned char)p[i] >= 0x80) return 1;
    return 0;
}

/* Routing keys of an xml event p[i:n], switch_event_xmlize's layout:
   <event> <headers> <Name>value</Name>... </headers>, whitespace between.
   Values are percent-encoded then xml-escaped, so '<' ends a value. Only
   the headers element is read, each element exactly <Name>value</Name>.
   A routing value with '&' (an entity), with '%' next to non-ASCII bytes
   (decoded as text by the twin), or repeated in the next element (an
   array: one element per item) is -2. */
ESL_NOINLINE int esl_scan_xml(const char *p, Py_ssize_t i, Py_ssize_t n, esl_keys *k, esl_ents *o) {
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
        ns = i + 1;
        j = ns + esl_xml_name_end(p + ns, n - ns);
        nl = j - ns;
        if (nl == 0 || j >= n || p[j] != '>') return -1;
        vs = j + 1;
        ve = vs + esl_find2(p + vs, n - vs, '<', '<');
        if (ve + nl + 3 > n || p[ve + 1] != '/' || !esl_same(p + ve + 2, p + ns, nl)
            || p[ve + nl + 2] != '>') return -1;
        if (o && !esl_put(o, ns, ns + nl, vs, ve, 0, 0)) return -3;  /* entities: seen by the decode */
        w = esl_key_of(p + ns, nl, &exact);
        if (w >= 0) {
            if (nl == pnl && memcmp(p + ns, p + pns, (size_t)nl) == 0) {
                /* the array goes on: the pair of the previous element changes */
                if (exact && (w == 0 || k->s[w] == pvs)) k->s[w] = -2;
            } else {
                hi = esl_has_high(p + vs, ve - vs);
                if (memchr(p + vs, '&', (size_t)(ve - vs))
                    || (hi && memchr(p + vs, '%', (size_t)(ve - vs)))) esl_note(k, w, exact, -2, -2);
                else esl_note(k, w, exact, vs, ve);
            }
        }
        pns = ns; pnl = nl; pvs = vs;
    }
    k->ihead = i;  /* where "</headers>" starts: the body part follows */
    esl_keys_done(k);
    return 0;
}

#if defined(__GNUC__) || defined(__clang__)
#define esl_prefetch(p) __builtin_prefetch((const void *)(p))
#else
#define esl_prefetch(p) ((void)0)
#endif

#endif /* ESL_SCAN_H */
