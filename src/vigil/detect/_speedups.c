/* The matcher's per-event hot path in C: flatten a pyevtx record into string views, and pick an index
 * bucket's candidate rules. Each function mirrors a Python reference (vigil.detect.events._evtx_views_fast,
 * vigil.detect.candidates.Bucket) that stays the fallback and the oracle the tests compare against.
 *
 * Written against the C API of CPython 3.11+ (compact strings read in place, presized dicts); no allocation
 * outlives a call except the results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Signals "a record shape the fast path leaves to the general one": the caller falls back. */
#define UNUSUAL 1
#define FAILED (-1)

static PyObject *s_event, *s_system, *s_eventdata, *s_userdata, *s_attributes, *s_text, *s_xmlns;
static PyObject *s_true, *s_false, *s_underscore, *s_lower, *s_channel, *s_eventid;

/* The texts of small integers (event ids, levels, process and thread ids...), made once as met: at most 65,536
 * strings, ~3.5 MiB. */
#define SMALL_INTS 65536
static PyObject *small_ints[SMALL_INTS];

/* value -> new reference to its text as rules see it, or NULL with *status set (UNUSUAL or FAILED). */
static PyObject *scalar(PyObject *value, int *status) {
    if (PyUnicode_CheckExact(value)) {
        return Py_NewRef(value);
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long n = PyLong_AsLongAndOverflow(value, &overflow);
        if (!overflow && n >= 0 && n < SMALL_INTS) {
            if (small_ints[n] == NULL && (small_ints[n] = PyObject_Str(value)) == NULL) {
                *status = FAILED;
                return NULL;
            }
            return Py_NewRef(small_ints[n]);
        }
        PyObject *s = PyObject_Str(value);
        if (s == NULL) *status = FAILED;
        return s;
    }
    if (value == Py_True) return Py_NewRef(s_true);
    if (value == Py_False) return Py_NewRef(s_false);
    *status = UNUSUAL;
    return NULL;
}

/* System names joined as "Provider_Name", kept: {field: {attribute: joined}}; the few names a log uses. */
static PyObject *joined_names;

/* Recent names by identity. orjson hands out the same key objects record after record (its key cache), so a
 * pointer comparison answers what a scan of the text or two dict lookups would. Each slot holds references:
 * no other object can take a cached address while it is cached. */
#define NAME_SLOT_BITS 10
#define NAME_SLOTS (1 << NAME_SLOT_BITS)
static struct {
    PyObject *a, *b, *name;  /* "a_b" */
} joined_slots[NAME_SLOTS];
static struct {
    PyObject *name;
    int flags;
} flag_slots[NAME_SLOTS];

static inline size_t name_slot(PyObject *a, PyObject *b) {
    uint64_t h = ((uint64_t)(uintptr_t)a ^ ((uint64_t)(uintptr_t)b << 7)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> (64 - NAME_SLOT_BITS));
}

static PyObject *joined_slow(PyObject *a, PyObject *b);

/* The name made from a and b (b NULL: a without its spaces), kept in its slot. */
static PyObject *slot_name(PyObject *a, PyObject *b) {
    size_t i = name_slot(a, b);
    if (joined_slots[i].a == a && joined_slots[i].b == b) return Py_NewRef(joined_slots[i].name);
    /* "Threat Name": Sigma rules write ThreatName, as the general path renames it */
    PyObject *out = b != NULL ? joined_slow(a, b) : PyObject_CallMethod(a, "replace", "ss", " ", "");
    if (out != NULL) {
        PyObject *old_a = joined_slots[i].a, *old_b = joined_slots[i].b, *old_name = joined_slots[i].name;
        joined_slots[i].a = Py_NewRef(a), joined_slots[i].b = Py_XNewRef(b), joined_slots[i].name = Py_NewRef(out);
        Py_XDECREF(old_a);
        Py_XDECREF(old_b);
        Py_XDECREF(old_name);
    }
    return out;
}

static PyObject *joined_slow(PyObject *a, PyObject *b) {
    PyObject *inner = PyDict_GetItemWithError(joined_names, a);
    if (inner == NULL) {
        if (PyErr_Occurred()) return NULL;
        if (PyDict_GET_SIZE(joined_names) > 10000) PyDict_Clear(joined_names);  /* bounded: names come from data */
        if ((inner = PyDict_New()) == NULL) return NULL;
        int rc = PyDict_SetItem(joined_names, a, inner);
        Py_DECREF(inner);  /* joined_names holds it */
        if (rc < 0) return NULL;
    }
    PyObject *out = PyDict_GetItemWithError(inner, b);
    if (out != NULL) return Py_NewRef(out);
    if (PyErr_Occurred()) return NULL;
    PyObject *ab = PyUnicode_Concat(a, s_underscore);
    if (ab == NULL) return NULL;
    out = PyUnicode_Concat(ab, b);
    Py_DECREF(ab);
    if (out != NULL && PyDict_GET_SIZE(inner) < 1000 && PyDict_SetItem(inner, b, out) < 0) Py_CLEAR(out);
    return out;
}

/* ---- Flat: an event's fields by name, as the rules read them --------------------------------------------
 *
 * A dict when a caller gives one (the Python entry points); else the fields of a record, added while flattening
 * it and indexed by hash. A dict of each record's fields cost more to make and free than most records cost to
 * match: one is made only for a record that some rule hits (its detection reports from it) or that a test
 * written in Python reads whole. */
#define FLAT_ENTRIES 64
typedef struct {
    PyObject *key, *value;  /* references */
    Py_hash_t hash;
} FlatEntry;

typedef struct {
    PyObject *dict;      /* the caller's view (borrowed), or the entries made a dict (owned when `made`) */
    int made;
    FlatEntry *entries;
    Py_ssize_t n, cap;
    int32_t *index;      /* 2 * cap slots, each 0 or an entry's number + 1: open addressing */
    FlatEntry entries0[FLAT_ENTRIES];
    int32_t index0[2 * FLAT_ENTRIES];
} Flat;

/* A view of `dict` (borrowed), or with dict NULL an empty one to add fields to. */
static void flat_init(Flat *f, PyObject *dict) {
    f->dict = dict, f->made = 0, f->entries = f->entries0, f->n = 0, f->cap = FLAT_ENTRIES, f->index = f->index0;
    if (dict == NULL) memset(f->index0, 0, sizeof f->index0);
}

static void flat_free(Flat *f) {
    for (Py_ssize_t i = 0; i < f->n; i++) {
        Py_DECREF(f->entries[i].key);
        Py_DECREF(f->entries[i].value);
    }
    if (f->entries != f->entries0) PyMem_Free(f->entries);
    if (f->index != f->index0) PyMem_Free(f->index);
    if (f->made) Py_DECREF(f->dict);
    f->n = 0, f->made = 0, f->dict = NULL, f->entries = f->entries0, f->index = f->index0;
}

static inline int given(const Flat *f) {
    return f->dict != NULL && !f->made;
}

static inline Py_hash_t str_hash(PyObject *s) {
    Py_hash_t h = ((PyASCIIObject *)s)->hash;
    return h != -1 ? h : PyObject_Hash(s);
}

static inline int same_str(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return PyUnicode_GET_LENGTH(b) == n && PyUnicode_KIND(a) == PyUnicode_KIND(b)
           && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)(n * PyUnicode_KIND(a))) == 0;
}

/* The entry of `key` (hash h), or -1 with *slot the free index slot where it would go. */
static Py_ssize_t flat_find(const Flat *f, PyObject *key, Py_hash_t h, size_t *slot) {
    size_t mask = (size_t)(2 * f->cap) - 1, i = (size_t)h & mask;
    for (; f->index[i] != 0; i = (i + 1) & mask) {
        const FlatEntry *e = &f->entries[f->index[i] - 1];
        if (e->hash == h && same_str(e->key, key)) return f->index[i] - 1;
    }
    *slot = i;
    return -1;
}

/* Add key -> value, stealing the reference to value: 0; UNUSUAL for a name already there; FAILED. */
static int flat_add(Flat *f, PyObject *key, PyObject *value) {
    Py_hash_t h = str_hash(key);
    size_t slot;
    if (h == -1 || flat_find(f, key, h, &slot) >= 0) {
        Py_DECREF(value);
        return h == -1 ? FAILED : UNUSUAL;
    }
    if (f->n == f->cap) {  /* twice the room, the index made again */
        Py_ssize_t cap = 2 * f->cap;
        FlatEntry *entries = cap <= INT32_MAX / 4 ? PyMem_Malloc((size_t)cap * sizeof(FlatEntry)) : NULL;
        int32_t *index = cap <= INT32_MAX / 4 ? PyMem_Calloc((size_t)(2 * cap), sizeof(int32_t)) : NULL;
        if (entries == NULL || index == NULL) {
            PyMem_Free(entries);
            PyMem_Free(index);
            Py_DECREF(value);
            PyErr_NoMemory();
            return FAILED;
        }
        memcpy(entries, f->entries, (size_t)f->n * sizeof(FlatEntry));
        if (f->entries != f->entries0) PyMem_Free(f->entries);
        if (f->index != f->index0) PyMem_Free(f->index);
        f->entries = entries, f->index = index, f->cap = cap;
        for (Py_ssize_t k = 0; k < f->n; k++) {
            size_t mask = (size_t)(2 * cap) - 1, i = (size_t)entries[k].hash & mask;
            while (index[i] != 0) i = (i + 1) & mask;
            index[i] = (int32_t)(k + 1);
        }
        flat_find(f, key, h, &slot);
    }
    f->entries[f->n] = (FlatEntry){Py_NewRef(key), value, h};
    f->index[slot] = (int32_t)(++f->n);
    return 0;
}

/* The value of a field (borrowed), NULL when absent; NULL with an exception on error. */
static PyObject *flat_get(const Flat *f, PyObject *field) {
    if (given(f)) return PyDict_GetItemWithError(f->dict, field);
    if (!PyUnicode_Check(field)) return NULL;  /* names are text */
    Py_hash_t h = str_hash(field);
    if (h == -1) return NULL;
    size_t slot;
    Py_ssize_t i = flat_find(f, field, h, &slot);
    return i < 0 ? NULL : f->entries[i].value;
}

/* PyDict_Next over the view. */
static int flat_next(const Flat *f, Py_ssize_t *pos, PyObject **key, PyObject **value) {
    if (given(f)) return PyDict_Next(f->dict, pos, key, value);
    if (*pos >= f->n) return 0;
    *key = f->entries[*pos].key, *value = f->entries[*pos].value;
    (*pos)++;
    return 1;
}

static Py_ssize_t flat_size(const Flat *f) {
    return given(f) ? PyDict_GET_SIZE(f->dict) : f->n;
}

/* The view as a dict (borrowed): the caller's, or the entries made into one, once. NULL on error. */
static PyObject *flat_dict(Flat *f) {
    if (f->dict != NULL) return f->dict;
    PyObject *d = _PyDict_NewPresized(f->n);
    if (d == NULL) return NULL;
    for (Py_ssize_t i = 0; i < f->n; i++) {
        if (_PyDict_SetItem_KnownHash(d, f->entries[i].key, f->entries[i].value, f->entries[i].hash) < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    f->dict = d, f->made = 1;
    return d;
}

/* Add key -> the text of value. 0, UNUSUAL or FAILED. */
static int put(Flat *out, PyObject *key, PyObject *value) {
    int status = 0;
    PyObject *text = scalar(value, &status);
    return text == NULL ? status : flat_add(out, key, text);
}

static int has_char(PyObject *s, Py_UCS4 ch) {
    return PyUnicode_FindChar(s, ch, 0, PyUnicode_GET_LENGTH(s), 1) >= 0;
}

enum { HAS_SPACE = 1, HAS_HASH = 2 };

/* Whether a name holds a space or a '#': HAS_SPACE | HAS_HASH. */
static int name_flags(PyObject *s) {
    size_t i = name_slot(s, NULL);
    if (flag_slots[i].name == s) return flag_slots[i].flags;
    int flags = 0;
    if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) {  /* one pass, no call: orjson's key cache evicts often */
        const Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
        for (Py_ssize_t k = 0, n = PyUnicode_GET_LENGTH(s); k < n; k++) {
            flags |= (d[k] == ' ' ? HAS_SPACE : 0) | (d[k] == '#' ? HAS_HASH : 0);
        }
    } else {
        flags = (has_char(s, ' ') ? HAS_SPACE : 0) | (has_char(s, '#') ? HAS_HASH : 0);
    }
    Py_XSETREF(flag_slots[i].name, Py_NewRef(s));
    flag_slots[i].flags = flags;
    return flags;
}

/* s == the interned ASCII `name` (the same object, or equal text), without a call per comparison. */
static inline int same_name(PyObject *s, PyObject *name) {
    if (s == name) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    return PyUnicode_GET_LENGTH(s) == n && PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND
           && memcmp(PyUnicode_1BYTE_DATA(s), PyUnicode_1BYTE_DATA(name), (size_t)n) == 0;
}

/* An element's attributes but xmlns: as prefix_attribute (System), or by their own names (prefix NULL). A name
 * with a space or a '#' is UNUSUAL: the general path renames it. */
static int put_attributes(Flat *orig, PyObject *attributes, PyObject *prefix) {
    if (!PyDict_CheckExact(attributes)) return UNUSUAL;
    Py_ssize_t pos = 0;
    PyObject *attr, *a;
    while (PyDict_Next(attributes, &pos, &attr, &a)) {
        if (!PyUnicode_Check(attr)) return UNUSUAL;
        if (a == Py_None || same_name(attr, s_xmlns)) continue;
        if (name_flags(attr)) return UNUSUAL;
        PyObject *name = prefix != NULL ? slot_name(prefix, attr) : Py_NewRef(attr);
        if (name == NULL) return FAILED;
        int rc = put(orig, name, a);
        Py_DECREF(name);
        if (rc) return rc;
    }
    return 0;
}

/* The System section: fields one level deep, attributes as Name_Attribute, "#text" as the field itself. */
static int flatten_system(Flat *orig, PyObject *system) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(system, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) return UNUSUAL;
        if (name_flags(key)) return UNUSUAL;
        if (value == Py_None) continue;
        if (!PyDict_CheckExact(value)) {
            int rc = put(orig, key, value);
            if (rc) return rc;
            continue;
        }
        Py_ssize_t sub_pos = 0;
        PyObject *sub, *v;
        while (PyDict_Next(value, &sub_pos, &sub, &v)) {
            if (!PyUnicode_Check(sub)) return UNUSUAL;
            if (same_name(sub, s_attributes)) {
                int rc = put_attributes(orig, v, key);
                if (rc) return rc;
                continue;
            }
            if (v == Py_None) continue;
            if (same_name(sub, s_text)) {
                int rc = put(orig, key, v);
                if (rc) return rc;
                continue;
            }
            if (name_flags(sub) & HAS_SPACE) return UNUSUAL;
            PyObject *name = slot_name(key, sub);
            if (name == NULL) return FAILED;
            int rc = put(orig, name, v);
            Py_DECREF(name);
            if (rc) return rc;
        }
    }
    return 0;  /* a repeated name (a field and an attribute made the same key) was UNUSUAL: the general path */
}

/* A list of scalars (an unnamed Data array) -> new tuple of their texts, Nones left out. */
static PyObject *texts_of(PyObject *list, int *status) {
    Py_ssize_t n = PyList_GET_SIZE(list), kept = 0;
    for (Py_ssize_t i = 0; i < n; i++) kept += PyList_GET_ITEM(list, i) != Py_None;
    PyObject *out = PyTuple_New(kept);
    if (out == NULL) {
        *status = FAILED;
        return NULL;
    }
    for (Py_ssize_t i = 0, j = 0; i < n && j < kept; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        if (item == Py_None) continue;
        PyObject *text = scalar(item, status);
        if (text == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, j++, text);
    }
    return out;
}

/* EventData: scalars by name; a {"#text": value} map as its value; a list of scalars as a tuple (sets *multi). */
static int flatten_data(Flat *orig, PyObject *data, int *multi) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(data, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) return UNUSUAL;
        if (same_name(key, s_attributes)) return UNUSUAL;
        if (PyDict_CheckExact(value)) {  /* <Data>text</Data> without a name: {"#text": ...} */
            if (PyDict_GET_SIZE(value) != 1) return UNUSUAL;
            value = PyDict_GetItemWithError(value, s_text);
            if (value == NULL) return PyErr_Occurred() ? FAILED : UNUSUAL;
        }
        if (value == Py_None) continue;
        int status = 0;
        PyObject *text;
        if (PyList_CheckExact(value)) {
            text = texts_of(value, &status);
            *multi = 1;
        } else {
            text = scalar(value, &status);
        }
        if (text == NULL) return status;
        PyObject *name = name_flags(key) & HAS_SPACE ? slot_name(key, NULL) : Py_NewRef(key);
        if (name == NULL) {
            Py_DECREF(text);
            return FAILED;
        }
        /* a name also in System (or two that differ by spaces) is UNUSUAL: the general path keeps both, a list */
        int rc = flat_add(orig, name, text);
        Py_DECREF(name);
        if (rc) return rc;
    }
    return 0;
}

/* UserData: the leaves of nested elements by their own names (attributes too, but xmlns), an element's "#text"
 * under the element's name; `text_done`: node's "#text" was taken already. Lists of elements, names that are
 * not plain, and names met twice are UNUSUAL: the general path renames and gathers them. */
static int flatten_leaves(Flat *orig, PyObject *node, int *multi, int text_done, int depth) {
    if (depth > 16) return UNUSUAL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(node, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) return UNUSUAL;
        if (same_name(key, s_attributes)) {
            int rc = put_attributes(orig, value, NULL);
            if (rc) return rc;
            continue;
        }
        if (text_done && same_name(key, s_text)) continue;
        if (name_flags(key)) return UNUSUAL;
        int rc = 0;
        if (PyDict_CheckExact(value)) {
            PyObject *text = PyDict_GetItemWithError(value, s_text);
            if (text == NULL && PyErr_Occurred()) return FAILED;
            if (text != NULL && text != Py_None && (rc = put(orig, key, text)) != 0) return rc;
            rc = flatten_leaves(orig, value, multi, 1, depth + 1);
        } else if (PyList_CheckExact(value)) {
            int status = 0;
            PyObject *texts = texts_of(value, &status);  /* an element among them: UNUSUAL */
            if (texts == NULL) return status;
            *multi = 1;
            rc = flat_add(orig, key, texts);
        } else if (value != Py_None) {
            rc = put(orig, key, value);
        }
        if (rc) return rc;
    }
    return 0;
}

/* New reference to the lower-cased string; an ASCII string without capitals is itself. */
static PyObject *lowered(PyObject *s) {
    if (PyUnicode_IS_COMPACT_ASCII(s)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s);
        const Py_UCS1 *src = PyUnicode_1BYTE_DATA(s);
        Py_ssize_t i = 0;
        while (i < n && !(src[i] >= 'A' && src[i] <= 'Z')) i++;
        if (i == n) return Py_NewRef(s);
        PyObject *out = PyUnicode_New(n, 127);
        if (out == NULL) return NULL;
        Py_UCS1 *dst = PyUnicode_1BYTE_DATA(out);
        memcpy(dst, src, (size_t)i);
        for (; i < n; i++) {
            Py_UCS1 c = src[i];
            dst[i] = (c >= 'A' && c <= 'Z') ? (Py_UCS1)(c + 32) : c;
        }
        return out;
    }
    return PyObject_CallMethodNoArgs(s, s_lower);
}

static PyObject *lowered_tuple(PyObject *t) {
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *l = lowered(PyTuple_GET_ITEM(t, i));
        if (l == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, l);
    }
    return out;
}

PyDoc_STRVAR(evtx_views_doc,
"evtx_views(record) -> (lower-cased, original, some value is a tuple) | None\n\n"
"The string views of a pyevtx JSON record of the usual shape; None when the general path must do it.");

/* The original view of a record of the usual shape, into `orig` (made by flat_init with no dict): 0 with
 * *multi; UNUSUAL (the general path must do it) or FAILED, with what was added still to free. */
static int flatten_record(PyObject *record, Flat *orig, int *multi) {
    *multi = 0;
    if (!PyDict_CheckExact(record)) return UNUSUAL;
    PyObject *event = PyDict_GetItemWithError(record, s_event);
    if (event == NULL) {
        if (PyErr_Occurred()) return FAILED;
        event = record;
    }
    if (!PyDict_CheckExact(event)) return UNUSUAL;
    PyObject *user = PyDict_GetItemWithError(event, s_userdata);
    if (user != NULL && user != Py_None && !PyDict_CheckExact(user)) return UNUSUAL;
    if (user == NULL && PyErr_Occurred()) return FAILED;
    PyObject *system = PyDict_GetItemWithError(event, s_system);
    if (system == NULL && PyErr_Occurred()) return FAILED;
    PyObject *data = PyDict_GetItemWithError(event, s_eventdata);
    if (data == NULL && PyErr_Occurred()) return FAILED;
    int rc = 0;
    if (system != NULL && system != Py_None) {
        rc = PyDict_CheckExact(system) ? flatten_system(orig, system) : UNUSUAL;
    }
    if (rc == 0 && data != NULL && data != Py_None) {
        rc = PyDict_CheckExact(data) ? flatten_data(orig, data, multi) : UNUSUAL;
    }
    if (rc == 0 && user != NULL && user != Py_None) rc = flatten_leaves(orig, user, multi, 0, 0);
    return rc;
}

static PyObject *lowered_view(PyObject *orig);

static PyObject *evtx_views(PyObject *module, PyObject *record) {
    (void)module;
    Flat f;
    flat_init(&f, NULL);
    int multi;
    int rc = flatten_record(record, &f, &multi);
    PyObject *orig = rc == 0 ? flat_dict(&f) : NULL, *low = NULL, *out = NULL;
    if (orig != NULL && (low = lowered_view(orig)) != NULL) {
        out = PyTuple_Pack(3, low, orig, multi ? Py_True : Py_False);
    } else if (rc == UNUSUAL) {
        out = Py_NewRef(Py_None);
    }
    Py_XDECREF(low);
    flat_free(&f);
    return out;
}

/* Candidate bindings of one event: a bit per binding and the list of those set, in small buffers that grow
 * for large rule sets. */
#define MARK_WORDS 64   /* 4096 bindings before the first growth */
#define MARK_IDS 128
typedef struct {
    uint64_t *bits;
    Py_ssize_t words;
    Py_ssize_t *ids;
    Py_ssize_t n, cap;
    uint64_t bits0[MARK_WORDS];
    Py_ssize_t ids0[MARK_IDS];
} Marks;

static void marks_init(Marks *m) {
    memset(m->bits0, 0, sizeof m->bits0);
    m->bits = m->bits0, m->words = MARK_WORDS, m->ids = m->ids0, m->n = 0, m->cap = MARK_IDS;
}

static void marks_free(Marks *m) {
    if (m->bits != m->bits0) PyMem_Free(m->bits);
    if (m->ids != m->ids0) PyMem_Free(m->ids);
}

static int mark(Marks *m, Py_ssize_t i) {
    if (i < 0 || i > (Py_ssize_t)INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "binding index out of range");
        return -1;
    }
    Py_ssize_t w = i >> 6;
    if (w >= m->words) {
        Py_ssize_t words = w + 1 > 2 * m->words ? w + 1 : 2 * m->words;
        uint64_t *bits = PyMem_Calloc((size_t)words, sizeof(uint64_t));
        if (bits == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(bits, m->bits, (size_t)m->words * sizeof(uint64_t));
        if (m->bits != m->bits0) PyMem_Free(m->bits);
        m->bits = bits, m->words = words;
    }
    uint64_t bit = (uint64_t)1 << (i & 63);
    if (m->bits[w] & bit) return 0;
    if (m->n == m->cap) {
        Py_ssize_t *ids = PyMem_Malloc((size_t)m->cap * 2 * sizeof(Py_ssize_t));
        if (ids == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(ids, m->ids, (size_t)m->n * sizeof(Py_ssize_t));
        if (m->ids != m->ids0) PyMem_Free(m->ids);
        m->ids = ids, m->cap *= 2;
    }
    m->bits[w] |= bit;
    m->ids[m->n++] = i;
    return 0;
}

static int mark_object(Marks *m, PyObject *id) {
    Py_ssize_t i = PyLong_AsSsize_t(id);
    if (i == -1 && PyErr_Occurred()) return -1;
    return mark(m, i);
}

/* Mark every element of the tuple `ids`. */
static int add_ids(Marks *found, PyObject *ids) {
    if (!PyTuple_CheckExact(ids)) {
        PyErr_SetString(PyExc_TypeError, "candidate ids must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (mark_object(found, PyTuple_GET_ITEM(ids, i)) < 0) return -1;
    }
    return 0;
}

/* One event being matched: its original view, and its lower-cased values, which the matcher makes as tests need
 * them (the literal searches read the original values through folded tables, so most values are never
 * lower-cased). They are kept in a few slots by field object (rules name fields with the same interned strings)
 * rather than in a dict; `low` is a dict only once something needs the whole view (`full`), or when given. */
#define LOW_SLOTS 24
typedef struct {
    PyObject *low;
    Flat *orig;
    PyObject *specs, *atoms;
    int full;
    int n_slots;
    PyObject *slot_field[LOW_SLOTS];  /* borrowed from the rules */
    PyObject *slot_value[LOW_SLOTS];  /* owned; NULL: the field is absent */
} Ctx;

/* A context over orig; low: a full lower-cased view (borrowed) or NULL to make values as needed. */
static void ctx_init(Ctx *ctx, PyObject *low, Flat *orig, PyObject *specs, PyObject *atoms) {
    ctx->low = Py_XNewRef(low), ctx->orig = orig, ctx->specs = specs, ctx->atoms = atoms;
    ctx->full = low != NULL, ctx->n_slots = 0;
}

static void ctx_free(Ctx *ctx) {
    for (int i = 0; i < ctx->n_slots; i++) Py_XDECREF(ctx->slot_value[i]);
    Py_CLEAR(ctx->low);
    ctx->n_slots = 0;
}

static int low_fill(Ctx *ctx);

/* The lower-cased value of a field (borrowed), NULL when absent; NULL with an exception on error. */
static PyObject *low_get(Ctx *ctx, PyObject *field) {
    if (ctx->full) return PyDict_GetItemWithError(ctx->low, field);
    for (int i = 0; i < ctx->n_slots; i++) {
        if (ctx->slot_field[i] == field) return ctx->slot_value[i];
    }
    PyObject *o = flat_get(ctx->orig, field), *l = NULL;
    if (o == NULL && PyErr_Occurred()) return NULL;
    if (o != NULL && (l = PyTuple_Check(o) ? lowered_tuple(o) : lowered(o)) == NULL) return NULL;
    if (ctx->n_slots == LOW_SLOTS) {  /* an event that many rules read many fields of: the whole view */
        Py_XDECREF(l);
        if (low_fill(ctx) < 0) return NULL;
        return PyDict_GetItemWithError(ctx->low, field);
    }
    ctx->slot_field[ctx->n_slots] = field, ctx->slot_value[ctx->n_slots] = l;
    ctx->n_slots++;
    return l;
}

/* Lower-case every field: what a Python test reading the whole view, or the general path, needs. */
static int low_fill(Ctx *ctx) {
    if (ctx->full) return 0;
    PyObject *low = _PyDict_NewPresized(flat_size(ctx->orig));
    if (low == NULL) return -1;
    for (int i = 0; i < ctx->n_slots; i++) {  /* the values made so far */
        if (ctx->slot_value[i] != NULL && PyDict_SetItem(low, ctx->slot_field[i], ctx->slot_value[i]) < 0) {
            Py_DECREF(low);
            return -1;
        }
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (flat_next(ctx->orig, &pos, &key, &value)) {
        int has = PyDict_Contains(low, key);
        if (has < 0) goto fail;
        if (has) continue;
        PyObject *l = PyTuple_Check(value) ? lowered_tuple(value) : lowered(value);
        if (l == NULL) goto fail;
        int rc = PyDict_SetItem(low, key, l);
        Py_DECREF(l);
        if (rc < 0) goto fail;
    }
    Py_XSETREF(ctx->low, low);
    ctx->full = 1;
    return 0;
fail:
    Py_DECREF(low);
    return -1;
}

/* The whole lower-cased view of orig: a new dict. */
static PyObject *lowered_view(PyObject *orig) {
    Flat f;
    flat_init(&f, orig);
    Ctx ctx;
    ctx_init(&ctx, NULL, &f, NULL, NULL);
    PyObject *low = low_fill(&ctx) < 0 ? NULL : Py_NewRef(ctx.low);
    ctx_free(&ctx);
    return low;
}

/* eq: one value of a field looked up in its table. */
static int eq_value(Marks *found, PyObject *table, PyObject *v) {
    if (!PyDict_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "an equality table must be a dict");
        return -1;
    }
    PyObject *ids = PyDict_GetItemWithError(table, v);
    if (ids == NULL) return PyErr_Occurred() ? -1 : 0;
    return add_ids(found, ids);
}

/* ---- Literals: which of many literals occur in a text ------------------------------------------------------
 *
 * A filter on a hash of four bytes of each literal (two for literals of two or three), then a comparison with the
 * literals whose bytes hash alike: one pass over a Latin-1 text whatever the number of literals. Each literal is
 * keyed by its four bytes that fewest literals share, so that common parts ("\\windows\\", ".exe") do not pile
 * hundreds of literals on one key. Where every literal is long, only every few positions of a text are tried,
 * each literal keyed once per residue of its key's position (see literals_new). The filter's size follows the
 * number of keys (64 bits per key, 512 to 128 Ki bits): a table of a few literals is a cache line, not kilobytes
 * that every probe would miss in cache.
 * Literals of one character are looked up by the text's characters; texts with wider characters are masked to
 * Latin-1 first.
 */
typedef struct {
    uint32_t key;
    uint32_t head;    /* the literal's bytes at offset (four, or two for short ones), compared first */
    int32_t offset;   /* where in the literal its key's bytes are */
    int32_t index;
} KeyEntry;

/* Entries by key: a bitmap of the keys present; rank[w] counts the keys before word w, so that the r-th key
 * present has its entries at entries[start[r]..start[r + 1]). */
typedef struct {
    int shift;          /* key = hash >> shift */
    int stride;         /* the text positions tried: every stride-th (see literals_new) */
    uint64_t *bits;
    uint32_t *rank;
    int32_t *start;
    KeyEntry *entries;
    Py_ssize_t n;
} KeyTable;

typedef struct {
    PyObject_HEAD
    PyObject *literals;       /* tuple of str */
    Py_ssize_t n;
    KeyTable quads;           /* Latin-1 literals of four characters or more */
    KeyTable pairs;           /* of two or three */
    int folded;               /* the literals are lower-case and texts are compared lower-cased */
    int32_t *short_ones;      /* "" literals, then the Latin-1 characters by value: [byte_start[b], byte_start[b + 1]) */
    Py_ssize_t n_empty;
    int32_t byte_start[257];
    uint64_t singles[4];      /* bit b: some literal is the character b */
    int32_t *wide_ones;       /* literals with a character past Latin-1 */
    Py_ssize_t n_wide;
    Py_ssize_t min_len;       /* of the non-empty Latin-1 literals: shorter texts hold none of them */
    int absent;               /* a byte no literal holds (-1 if none): stands for wider characters of a text */
} Literals;

/* str.lower() of each Latin-1 character, which stays Latin-1: A-Z and À-Þ but ×. */
static Py_UCS1 lower_table[256];

/* The bytes d[0..width) as a word; folded: with bit 5 set in each, which makes ASCII and Latin-1 capitals
 * their lower case (and a few other characters alike, which only costs a comparison). */
static inline uint32_t load_word(const Py_UCS1 *d, int width, int folded) {
    uint32_t x = 0;
    memcpy(&x, d, (size_t)width);
    return folded ? x | (width == 4 ? 0x20202020u : 0x2020u) : x;
}

static inline uint32_t hash_bytes(const Py_UCS1 *d, int width, int folded) {
    return load_word(d, width, folded) * 2654435761u;
}

static void table_free(KeyTable *t) {
    PyMem_Free(t->bits);
    PyMem_Free(t->rank);
    PyMem_Free(t->start);
    PyMem_Free(t->entries);
}

/* Key bits for n entries: about 64 bits of filter per entry (a probe past the filter costs more than a miss). */
static int table_shift(Py_ssize_t n) {
    int log2 = 9;
    while (log2 < 17 && ((Py_ssize_t)1 << log2) < n * 64) log2++;
    return 32 - log2;
}

static int key_order(const void *a, const void *b) {
    const KeyEntry *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Sort the table's n entries (keys set) and build its bitmap, ranks and starts. 0, or -1 out of memory. */
static int table_build(KeyTable *t) {
    size_t words = ((size_t)1 << (32 - t->shift)) / 64;
    t->bits = PyMem_Calloc(words, sizeof(uint64_t));
    t->rank = PyMem_Calloc(words, sizeof(uint32_t));
    t->start = PyMem_Calloc((size_t)t->n + 1, sizeof(int32_t));
    if (t->bits == NULL || t->rank == NULL || t->start == NULL) return -1;
    qsort(t->entries, (size_t)t->n, sizeof(KeyEntry), key_order);
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {
        uint32_t k = t->entries[i].key;
        if (i == 0 || k != t->entries[i - 1].key) {
            t->start[distinct++] = (int32_t)i;
            t->bits[k >> 6] |= (uint64_t)1 << (k & 63);
        }
    }
    t->start[distinct] = (int32_t)t->n;
    uint32_t before = 0;
    for (size_t w = 0; w < words; w++) {
        t->rank[w] = before;
        before += (uint32_t)__builtin_popcountll(t->bits[w]);
    }
    return 0;
}

static void literals_dealloc(Literals *self) {
    Py_XDECREF(self->literals);
    table_free(&self->quads);
    table_free(&self->pairs);
    PyMem_Free(self->short_ones);
    PyMem_Free(self->wide_ones);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *literals_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *seq;
    int folded = 0;
    static char *kwlist[] = {"literals", "folded", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p:Literals", kwlist, &seq, &folded)) return NULL;
    PyObject *literals = PySequence_Tuple(seq);
    if (literals == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(literals);
    if (n > INT32_MAX / 16) {
        Py_DECREF(literals);
        PyErr_SetString(PyExc_OverflowError, "too many literals");
        return NULL;
    }
    Py_ssize_t n_quads = 0, n_pairs = 0, min_quad = PY_SSIZE_T_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, i);
        if (!PyUnicode_Check(lit)) {
            Py_DECREF(literals);
            PyErr_Format(PyExc_TypeError, "literal %zd is not a str", i);
            return NULL;
        }
        if (folded && PyUnicode_KIND(lit) != PyUnicode_1BYTE_KIND) {  /* wide: searched in the lowered text */
            PyObject *low = PyObject_CallMethodNoArgs(lit, s_lower);
            int same = low == NULL ? -1 : PyUnicode_Compare(low, lit) == 0;
            Py_XDECREF(low);
            if (same != 1) {
                Py_DECREF(literals);
                if (same == 0) PyErr_Format(PyExc_ValueError, "literal %zd is not lower-case: a folded table needs it so", i);
                return NULL;
            }
        }
        if (PyUnicode_KIND(lit) == PyUnicode_1BYTE_KIND) {
            Py_ssize_t len = PyUnicode_GET_LENGTH(lit);
            n_quads += len >= 4, n_pairs += len == 2 || len == 3;
            if (len >= 4 && len < min_quad) min_quad = len;
            for (Py_ssize_t j = 0; folded && j < len; j++) {
                Py_UCS1 c = PyUnicode_1BYTE_DATA(lit)[j];
                if (lower_table[c] != c) {
                    Py_DECREF(literals);
                    PyErr_Format(PyExc_ValueError, "literal %zd is not lower-case: a folded table needs it so", i);
                    return NULL;
                }
            }
        }
    }
    Literals *self = (Literals *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(literals);
        return NULL;
    }
    self->literals = literals;
    self->n = n;
    self->folded = folded;
    /* Literals of m characters or more hold a four-byte key at each of m - 3 consecutive positions: one of
     * them is a multiple of m - 3. Keyed once per residue of their positions modulo that stride, they are found
     * by trying every stride-th position of a text (a sixth of them for SigmaHQ's mimikatz keywords). */
    int stride = n_quads == 0 ? 1 : (int)(min_quad - 3 < 64 ? min_quad - 3 : 64);
    while (stride > 1 && n_quads * stride > (1 << 18)) stride /= 2;  /* memory: a few MiB at most */
    self->quads.stride = stride, self->pairs.stride = 1;
    self->quads.shift = table_shift(n_quads * stride), self->pairs.shift = table_shift(n_pairs);
    self->quads.entries = PyMem_Calloc((size_t)(n_quads * stride) + 1, sizeof(KeyEntry));
    self->pairs.entries = PyMem_Calloc((size_t)n_pairs + 1, sizeof(KeyEntry));
    self->short_ones = PyMem_Calloc((size_t)n + 1, sizeof(int32_t));
    self->wide_ones = PyMem_Calloc((size_t)n + 1, sizeof(int32_t));
    /* literals per key, to pick rare keys */
    uint32_t *counts = PyMem_Calloc((size_t)1 << (32 - self->quads.shift), sizeof(uint32_t));
    if (self->quads.entries == NULL || self->pairs.entries == NULL || self->short_ones == NULL
        || self->wide_ones == NULL || counts == NULL) {
        PyMem_Free(counts);
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    int qshift = self->quads.shift;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, i);
        if (PyUnicode_KIND(lit) != PyUnicode_1BYTE_KIND) continue;
        const Py_UCS1 *d = PyUnicode_1BYTE_DATA(lit);
        for (Py_ssize_t off = 0; off + 4 <= PyUnicode_GET_LENGTH(lit); off++) counts[hash_bytes(d + off, 4, folded) >> qshift]++;
    }
    /* One-character literals grouped by character, after the empty ones: a text's characters pick them. */
    uint64_t used[4] = {0, 0, 0, 0};
    self->min_len = PY_SSIZE_T_MAX;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, i);
        Py_ssize_t len = PyUnicode_GET_LENGTH(lit);
        if (PyUnicode_KIND(lit) != PyUnicode_1BYTE_KIND) {
            self->wide_ones[self->n_wide++] = (int32_t)i;
            continue;
        }
        if (len > 0 && len < self->min_len) self->min_len = len;
        for (Py_ssize_t j = 0; j < len; j++) {
            Py_UCS1 c = PyUnicode_1BYTE_DATA(lit)[j];
            used[c >> 6] |= (uint64_t)1 << (c & 63);
        }
        if (len == 0) self->short_ones[self->n_empty++] = (int32_t)i;
        else if (len == 1) self->byte_start[PyUnicode_1BYTE_DATA(lit)[0] + 1]++;
    }
    self->absent = -1;
    for (int b = 1; b < 256 && self->absent < 0; b++) {
        if (!((used[b >> 6] >> (b & 63)) & 1)) self->absent = b;
    }
    self->byte_start[0] = (int32_t)self->n_empty;
    for (int b = 0; b < 256; b++) self->byte_start[b + 1] += self->byte_start[b];
    int32_t fill[256];
    memcpy(fill, self->byte_start, sizeof fill);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lit = PyTuple_GET_ITEM(literals, i);
        Py_ssize_t len = PyUnicode_GET_LENGTH(lit);
        if (PyUnicode_KIND(lit) != PyUnicode_1BYTE_KIND || len == 0) continue;  /* wide ones: searched apart */
        const Py_UCS1 *d = PyUnicode_1BYTE_DATA(lit);
        if (len == 1) {
            self->short_ones[fill[d[0]]++] = (int32_t)i;
            self->singles[d[0] >> 6] |= (uint64_t)1 << (d[0] & 63);
            continue;
        }
        KeyTable *t = len >= 4 ? &self->quads : &self->pairs;
        int width = len >= 4 ? 4 : 2;
        /* per residue of the key's position: the key that fewest literals share */
        for (int r = 0; r < t->stride; r++) {
            Py_ssize_t best = r;
            for (Py_ssize_t off = r + t->stride; width == 4 && off + 4 <= len; off += t->stride) {
                if (counts[hash_bytes(d + off, 4, folded) >> qshift] < counts[hash_bytes(d + best, 4, folded) >> qshift]) {
                    best = off;
                }
            }
            KeyEntry *e = &t->entries[t->n++];
            e->key = hash_bytes(d + best, width, folded) >> t->shift;
            e->head = load_word(d + best, width, folded);
            e->offset = (int32_t)best;
            e->index = (int32_t)i;
        }
    }
    PyMem_Free(counts);
    if (table_build(&self->quads) < 0 || table_build(&self->pairs) < 0) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

/* Called per literal found: 0 goes on, anything else stops the scan and is returned (-1: an error). */
typedef int (*on_found)(void *arg, Py_ssize_t index);

/* The literals of the table with `key` (present in its bitmap) whose key bytes are at position i of d[0..len)
 * and that occur there in full; `width`: how many bytes a key covers (4, or 2 for the short literals). */
static int probe(Literals *self, const KeyTable *t, uint32_t key, const Py_UCS1 *d, Py_ssize_t len, Py_ssize_t i,
                 int width, on_found found, void *arg) {
    uint64_t word = t->bits[key >> 6];
    uint32_t r = t->rank[key >> 6] + (uint32_t)__builtin_popcountll(word & (((uint64_t)1 << (key & 63)) - 1));
    uint32_t head = load_word(d + i, width, self->folded);
    for (int32_t k = t->start[r]; k < t->start[r + 1]; k++) {
        const KeyEntry *e = &t->entries[k];
        if (e->head != head) continue;
        Py_ssize_t start = i - e->offset;
        PyObject *lit = PyTuple_GET_ITEM(self->literals, e->index);
        Py_ssize_t l = PyUnicode_GET_LENGTH(lit);
        if (start < 0 || start + l > len) continue;
        const Py_UCS1 *want = PyUnicode_1BYTE_DATA(lit);
        int same = 1;
        if (self->folded) {
            for (Py_ssize_t j = 0; j < l && same; j++) same = lower_table[d[start + j]] == want[j];
        } else {
            same = memcmp(d + start, want, (size_t)l) == 0;
        }
        if (same) {
            int rc = found(arg, e->index);
            if (rc) return rc;
        }
    }
    return 0;
}

/* Call `found(arg, i)` for each Latin-1 literal i that occurs in the bytes d[0..len) (possibly more than once
 * per literal), until it returns non-zero. */
static int scan_bytes(Literals *self, const Py_UCS1 *d, Py_ssize_t len, on_found found, void *arg) {
    for (Py_ssize_t k = 0; k < self->n_empty; k++) {  /* "" occurs in every text */
        int rc = found(arg, self->short_ones[k]);
        if (rc) return rc;
    }
    if (len < self->min_len) return 0;
    if (self->byte_start[256] > self->n_empty) {  /* one-character literals: the text's characters, once each */
        uint64_t seen[4] = {0, 0, 0, 0};
        for (Py_ssize_t i = 0; i < len; i++) {
            Py_UCS1 c = self->folded ? lower_table[d[i]] : d[i];
            seen[c >> 6] |= (uint64_t)1 << (c & 63);
        }
        for (int w = 0; w < 4; w++) {
            for (uint64_t bits = seen[w] & self->singles[w]; bits; bits &= bits - 1) {
                int b = w * 64 + __builtin_ctzll(bits);
                for (int32_t k = self->byte_start[b]; k < self->byte_start[b + 1]; k++) {
                    int rc = found(arg, self->short_ones[k]);
                    if (rc) return rc;
                }
            }
        }
    }
    /* the long literals, then those of two or three; each loop with its width known to the compiler */
    int folded = self->folded;
#define SCAN(table, width)                                                                  \
    if ((table).n > 0) {                                                                    \
        const uint64_t *bits = (table).bits;                                                \
        int shift = (table).shift;                                                          \
        Py_ssize_t stride = (table).stride;                                                 \
        for (Py_ssize_t i = 0; i + (width) <= len; i += stride) {                           \
            uint32_t key = hash_bytes(d + i, (width), folded) >> shift;                     \
            if ((bits[key >> 6] >> (key & 63)) & 1) {                                       \
                int rc = probe(self, &(table), key, d, len, i, (width), found, arg);        \
                if (rc) return rc;                                                          \
            }                                                                               \
        }                                                                                   \
    }
    SCAN(self->quads, 4)
    SCAN(self->pairs, 2)
#undef SCAN
    return 0;
}

/* Call `found(arg, i)` for each literal i that occurs in `text` (possibly more than once per literal), until it
 * returns non-zero. A text with wider characters is scanned as Latin-1 with those characters replaced by a byte
 * that no literal holds, then searched for the few wide literals one by one. */
static int scan_text(Literals *self, PyObject *text, on_found found, void *arg) {
    int kind = PyUnicode_KIND(text);
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (kind == PyUnicode_1BYTE_KIND) return scan_bytes(self, PyUnicode_1BYTE_DATA(text), len, found, arg);
    if (self->absent < 0) {  /* every byte value in some literal: search each literal */
        for (Py_ssize_t i = 0; i < self->n; i++) {
            int c = PyUnicode_Contains(text, PyTuple_GET_ITEM(self->literals, i));
            if (c < 0) return -1;
            if (c && (c = found(arg, i)) != 0) return c;
        }
        return 0;
    }
    Py_UCS1 *narrow = PyMem_Malloc((size_t)len + 1);
    if (narrow == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        narrow[i] = c < 256 ? (Py_UCS1)c : (Py_UCS1)self->absent;
    }
    int rc = scan_bytes(self, narrow, len, found, arg);
    PyMem_Free(narrow);
    for (Py_ssize_t k = 0; rc == 0 && k < self->n_wide; k++) {
        int c = PyUnicode_Contains(text, PyTuple_GET_ITEM(self->literals, self->wide_ones[k]));
        if (c < 0) return -1;
        if (c) rc = found(arg, self->wide_ones[k]);
    }
    return rc;
}

static int literals_scan(Literals *self, PyObject *text, on_found found, void *arg) {
    if (PyUnicode_KIND(text) == PyUnicode_1BYTE_KIND) {  /* the usual text: no stop on the way */
        return scan_bytes(self, PyUnicode_1BYTE_DATA(text), PyUnicode_GET_LENGTH(text), found, arg);
    }
    if (!self->folded) return scan_text(self, text, found, arg);
    /* past Latin-1, str.lower() is no per-byte table (the Kelvin sign becomes k): the text lower-cased first */
    PyObject *lowered_text = PyObject_CallMethodNoArgs(text, s_lower);
    if (lowered_text == NULL) return -1;
    int rc = scan_text(self, lowered_text, found, arg);
    Py_DECREF(lowered_text);
    return rc;
}

static int collect_index(void *arg, Py_ssize_t index) {
    PyObject *i = PyLong_FromSsize_t(index);
    if (i == NULL) return -1;
    int rc = PySet_Add((PyObject *)arg, i);
    Py_DECREF(i);
    return rc;
}

static PyObject *literals_find(Literals *self, PyObject *text) {
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "find() needs a str");
        return NULL;
    }
    PyObject *found = PySet_New(NULL);
    if (found == NULL) return NULL;
    if (literals_scan(self, text, collect_index, found) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    PyObject *out = PySequence_List(found);
    Py_DECREF(found);
    if (out != NULL && PyList_Sort(out) < 0) Py_CLEAR(out);
    return out;
}

static Py_ssize_t literals_len(Literals *self) {
    return self->n;
}

static PyMethodDef literals_methods[] = {
    {"find", (PyCFunction)literals_find, METH_O, "find(text) -> sorted indexes of the literals that occur in text"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods literals_as_sequence = {.sq_length = (lenfunc)literals_len};

static PyTypeObject LiteralsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vigil.detect._speedups.Literals",
    .tp_basicsize = sizeof(Literals),
    .tp_dealloc = (destructor)literals_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Literals(literals): which of many literals occur in a text, in one pass.",
    .tp_methods = literals_methods,
    .tp_as_sequence = &literals_as_sequence,
    .tp_new = literals_new,
};

static int stop_at_first(void *arg, Py_ssize_t index) {
    (void)arg, (void)index;
    return 1;
}

typedef struct {
    Marks *found;
    PyObject *ids;
} AddIds;

static int add_literal_ids(void *arg, Py_ssize_t index) {
    AddIds *a = arg;
    return add_ids(a->found, PyTuple_GET_ITEM(a->ids, index));
}

/* sub: (literals, ids per literal, anchors, automaton, Literals or None) searched in one value: by the matcher,
 * or one substring search per literal (tables too small for a matcher; the anchors and automaton are the
 * Python path's). */
static int sub_value(Marks *found, PyObject *spec, PyObject *v) {
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 5 || !PyTuple_CheckExact(PyTuple_GET_ITEM(spec, 0))
        || !PyTuple_CheckExact(PyTuple_GET_ITEM(spec, 1))
        || PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 1)) != PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 0))) {
        PyErr_SetString(PyExc_TypeError, "a literal search must be (literals, ids, anchors, automaton, matcher)");
        return -1;
    }
    PyObject *literals = PyTuple_GET_ITEM(spec, 0);
    PyObject *ids = PyTuple_GET_ITEM(spec, 1);
    PyObject *matcher = PyTuple_GET_ITEM(spec, 4);
    if (matcher != Py_None) {
        if (!PyObject_TypeCheck(matcher, &LiteralsType)) {
            PyErr_SetString(PyExc_TypeError, "a sub spec's matcher must be a Literals");
            return -1;
        }
        AddIds a = {found, ids};
        return literals_scan((Literals *)matcher, v, add_literal_ids, &a);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(literals);
    for (Py_ssize_t i = 0; i < n; i++) {
        int c = PyUnicode_Contains(v, PyTuple_GET_ITEM(literals, i));
        if (c < 0) return -1;
        if (c && add_ids(found, PyTuple_GET_ITEM(ids, i)) < 0) return -1;
    }
    return 0;
}

typedef int (*value_test)(Marks *found, PyObject *spec, PyObject *v);

/* Run `test` on a value: a string, or each string of a tuple. */
static int each_value(Marks *found, PyObject *spec, PyObject *v, value_test test) {
    if (PyUnicode_Check(v)) return test(found, spec, v);
    if (PyTuple_Check(v)) {
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(v); j++) {
            if (test(found, spec, PyTuple_GET_ITEM(v, j)) < 0) return -1;
        }
    }
    return 0;
}

/* A folded literal table reads original values; anything else the lower-cased ones. */
static int reads_original(PyObject *spec) {
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 5) return 0;
    PyObject *matcher = PyTuple_GET_ITEM(spec, 4);
    return PyObject_TypeCheck(matcher, &LiteralsType) && ((Literals *)matcher)->folded;
}

/* Run `test` on each (field, spec) of `pairs` whose field has a value: eq (original: 0) looks up lower-cased
 * values; sub (original: 1) searches the original ones where its table folds case. */
static int each_field(Marks *found, Ctx *ctx, PyObject *pairs, value_test test, int original) {
    Py_ssize_t n = PyTuple_GET_SIZE(pairs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a lookup must be a (field, table) pair");
            return -1;
        }
        PyObject *field = PyTuple_GET_ITEM(pair, 0), *spec = PyTuple_GET_ITEM(pair, 1);
        /* most fields are absent: known from orig before the spec (cold memory) is read */
        PyObject *v = flat_get(ctx->orig, field);
        if (v == NULL) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        if (!(original && reads_original(spec)) && (v = low_get(ctx, field)) == NULL) return -1;
        if (each_value(found, spec, v, test) < 0) return -1;
    }
    return 0;
}

/* ---- candidates of a whole bucket, and rule evaluation -------------------------------------------------- */

/* The optional lookups the Python twin (Bucket.candidates) adds after the core ones. */
static int is_ascii_value(PyObject *v) {
    if (PyUnicode_Check(v)) return PyUnicode_IS_ASCII(v);
    if (PyTuple_Check(v)) {
        Py_ssize_t n = PyTuple_GET_SIZE(v);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *x = PyTuple_GET_ITEM(v, i);
            if (PyUnicode_Check(x) && !PyUnicode_IS_ASCII(x)) return 0;
        }
    }
    return 1;
}

/* Non-ASCII values: judged on the lower-cased value (lower() makes the Kelvin sign ASCII), which an ASCII
 * original never needs. */
static int non_ascii(Ctx *ctx, PyObject *field, PyObject *original) {
    if (is_ascii_value(original)) return 0;
    PyObject *v = low_get(ctx, field);
    if (v == NULL) return PyErr_Occurred() ? -1 : 0;
    return !is_ascii_value(v);
}

static int unicode_lookups(Marks *found, Ctx *ctx, PyObject *unicode) {
    Py_ssize_t n = PyTuple_GET_SIZE(unicode);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(unicode, i);
        PyObject *field = PyTuple_GET_ITEM(pair, 0);
        int some = 0;
        if (field == Py_None) {
            Py_ssize_t pos = 0;
            PyObject *k, *v;
            while (some == 0 && flat_next(ctx->orig, &pos, &k, &v)) some = non_ascii(ctx, k, v);
        } else {
            PyObject *v = flat_get(ctx->orig, field);
            if (v == NULL && PyErr_Occurred()) return -1;
            some = v == NULL ? 0 : non_ascii(ctx, field, v);
        }
        if (some < 0 || (some && add_ids(found, PyTuple_GET_ITEM(pair, 1)) < 0)) return -1;
    }
    return 0;
}

/* Keyword literals: searched in each value (list elements included), the original ones for a folded table. */
static int keyword_lookups(Marks *found, Ctx *ctx, PyObject *spec) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    if (!reads_original(spec)) {  /* the lower-cased values */
        if (low_fill(ctx) < 0) return -1;
        while (PyDict_Next(ctx->low, &pos, &k, &v)) {
            if (each_value(found, spec, v, sub_value) < 0) return -1;
        }
        return 0;
    }
    if (PyTuple_GET_SIZE(spec) == 5 && PyTuple_CheckExact(PyTuple_GET_ITEM(spec, 1))
        && PyTuple_GET_SIZE(PyTuple_GET_ITEM(spec, 1)) == ((Literals *)PyTuple_GET_ITEM(spec, 4))->n) {
        /* the usual case, a folded matcher (reads_original checked it): no per-value checks of the spec */
        AddIds a = {found, PyTuple_GET_ITEM(spec, 1)};
        Literals *matcher = (Literals *)PyTuple_GET_ITEM(spec, 4);
        /* a value shorter than every literal holds none, unless "" or a literal past Latin-1 is one */
        Py_ssize_t shortest = matcher->n_empty == 0 && matcher->n_wide == 0 ? matcher->min_len : 0;
        while (flat_next(ctx->orig, &pos, &k, &v)) {
            if (PyUnicode_Check(v)) {
                if (PyUnicode_GET_LENGTH(v) >= shortest && literals_scan(matcher, v, add_literal_ids, &a) < 0) {
                    return -1;
                }
            } else if (each_value(found, spec, v, sub_value) < 0) {
                return -1;
            }
        }
        return 0;
    }
    while (flat_next(ctx->orig, &pos, &k, &v)) {
        if (each_value(found, spec, v, sub_value) < 0) return -1;
    }
    return 0;
}

/* Mark the candidates of one bucket. args: (always, eq, sub, has, unicode, keyword spec or None). 0 or -1. */
static int bucket_candidates(Marks *found, Ctx *ctx, PyObject *args) {
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 6) {
        PyErr_SetString(PyExc_TypeError, "bucket lookups must be a 6-tuple");
        return -1;
    }
    for (Py_ssize_t i = 1; i < 5; i++) {
        if (!PyTuple_CheckExact(PyTuple_GET_ITEM(args, i))) {
            PyErr_SetString(PyExc_TypeError, "bucket lookups: eq, sub, has and unicode must be tuples");
            return -1;
        }
    }
    PyObject *always = PyTuple_GET_ITEM(args, 0);
    if (PyTuple_CheckExact(always)) {
        if (add_ids(found, always) < 0) return -1;
    } else {  /* any iterable of ids */
        PyObject *it = PyObject_GetIter(always);
        if (it == NULL) return -1;
        PyObject *x;
        while ((x = PyIter_Next(it)) != NULL) {
            int rc = mark_object(found, x);
            Py_DECREF(x);
            if (rc < 0) break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) return -1;
    }
    PyObject *has = PyTuple_GET_ITEM(args, 3);
    if (each_field(found, ctx, PyTuple_GET_ITEM(args, 1), eq_value, 0) < 0
        || each_field(found, ctx, PyTuple_GET_ITEM(args, 2), sub_value, 1) < 0) return -1;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(has); i++) {
        PyObject *pair = PyTuple_GET_ITEM(has, i);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a lookup must be a (field, table) pair");
            return -1;
        }
        int c = flat_get(ctx->orig, PyTuple_GET_ITEM(pair, 0)) != NULL;
        if ((!c && PyErr_Occurred()) || (c && add_ids(found, PyTuple_GET_ITEM(pair, 1)) < 0)) return -1;
    }
    if (unicode_lookups(found, ctx, PyTuple_GET_ITEM(args, 4)) < 0) return -1;
    PyObject *keyword = PyTuple_GET_ITEM(args, 5);
    if (keyword != Py_None && keyword_lookups(found, ctx, keyword) < 0) return -1;
    return 0;
}

/* Atom specs (codegen): (opcode, cased, payload); the Python atom test A[i] for everything else. */
enum { OP_PYTHON = 0, OP_EQ, OP_CONTAINS, OP_STARTSWITH, OP_ENDSWITH, OP_EXISTS, OP_NOT_EXISTS, OP_NULL, OP_CALL };

/* OP_CALL: the payload (a regex search or full match) called with one value; the truth of what it gives. */
static int call_value(PyObject *payload, PyObject *s) {
    if (!PyUnicode_Check(s)) return 0;
    PyObject *r = PyObject_CallOneArg(payload, s);
    if (r == NULL) return -1;
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    return ok;
}

/* Whether needle[0..m) (m >= 1) occurs in text[0..n). The values are short (a path, a command line): glibc's
 * memmem sets up a shift table on every call, which costs more than this whole search on most of them. */
static int contains_bytes(const char *text, size_t n, const char *needle, size_t m) {
    if (m > n) return 0;
    const char *last = text + (n - m), *p = text;
    while ((p = memchr(p, needle[0], (size_t)(last - p) + 1)) != NULL) {
        if (memcmp(p + 1, needle + 1, m - 1) == 0) return 1;
        if (p++ == last) break;
    }
    return 0;
}

/* One atom on one value: v lower-cased, o original (NULL when absent). 1, 0 or -1. */
static int atom_value(int op, PyObject *payload, int cased, PyObject *v, PyObject *o) {
    PyObject *s = cased ? o : v;
    switch (op) {
    case OP_EXISTS: return o != NULL;
    case OP_NOT_EXISTS: return o == NULL;
    case OP_NULL: return o == NULL || (PyUnicode_Check(o) && PyUnicode_GET_LENGTH(o) == 0);
    default: break;
    }
    if (s == NULL || !PyUnicode_Check(s)) return 0;
    if (op == OP_EQ) return PySet_Contains(payload, s);  /* an exception if payload is no set */
    if (op == OP_CONTAINS && PyObject_TypeCheck(payload, &LiteralsType)) {  /* many literals: one pass */
        return literals_scan((Literals *)payload, s, stop_at_first, NULL);
    }
    if (!PyTuple_CheckExact(payload) || op > OP_ENDSWITH) {
        PyErr_SetString(PyExc_TypeError, "malformed atom spec");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(payload);
    int narrow = PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND;
    const char *d = narrow ? (const char *)PyUnicode_1BYTE_DATA(s) : NULL;
    size_t len = (size_t)PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *lit = PyTuple_GET_ITEM(payload, i);
        if (narrow && PyUnicode_Check(lit) && PyUnicode_KIND(lit) == PyUnicode_1BYTE_KIND) {
            /* the usual case, compared in place: a Latin-1 value and literal */
            const char *l = (const char *)PyUnicode_1BYTE_DATA(lit);
            size_t m = (size_t)PyUnicode_GET_LENGTH(lit);
            if (m > len) continue;
            int hit;
            if (op == OP_CONTAINS) hit = m == 0 || contains_bytes(d, len, l, m);
            else hit = memcmp(op == OP_STARTSWITH ? d : d + len - m, l, m) == 0;
            if (hit) return 1;
            continue;
        }
        Py_ssize_t r;
        if (op == OP_CONTAINS) r = PyUnicode_Contains(s, lit);
        else r = PyUnicode_Tailmatch(s, lit, 0, PY_SSIZE_T_MAX, op == OP_STARTSWITH ? -1 : 1);
        if (r != 0) return (int)r;  /* 1, or -1 with an exception */
    }
    return 0;
}

/* A test written in Python; `whole`: it reads other fields of the lower-cased view than its own (a keyword
 * search, a field reference), which is then filled first. */
static int python_atom(Ctx *ctx, Py_ssize_t index, PyObject *v, PyObject *o, int whole) {
    if (whole && low_fill(ctx) < 0) return -1;
    PyObject *test = PyList_GET_ITEM(ctx->atoms, index);
    /* the others do not read the lower-cased view (see codegen's spec): None unless it is whole already */
    PyObject *orig = flat_dict(ctx->orig);  /* a dict made for the rare record that reaches one */
    if (orig == NULL) return -1;
    PyObject *args[4] = {v ? v : Py_None, o ? o : Py_None, ctx->full ? ctx->low : Py_None, orig};
    PyObject *r = PyObject_Vectorcall(test, args, 4, NULL);
    if (r == NULL) return -1;
    int ok = PyObject_IsTrue(r);
    Py_DECREF(r);
    return ok;
}

static int eval_atom(Ctx *ctx, PyObject *tree) {
    Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(tree, 1));
    if (index == -1 && PyErr_Occurred()) return -1;
    if (index < 0 || index >= PyList_GET_SIZE(ctx->specs) || index >= PyList_GET_SIZE(ctx->atoms)) {
        PyErr_SetString(PyExc_IndexError, "atom index out of range");
        return -1;
    }
    PyObject *field = PyTuple_GET_ITEM(tree, 2);
    if (field == Py_None) return python_atom(ctx, index, NULL, NULL, 1);  /* a keyword search */
    PyObject *spec = PyList_GET_ITEM(ctx->specs, index);
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) != 3) {
        PyErr_SetString(PyExc_TypeError, "an atom spec must be (opcode, cased, payload)");
        return -1;
    }
    int op = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (op == -1 && PyErr_Occurred()) return -1;
    int cased = PyTuple_GET_ITEM(spec, 1) == Py_True;
    PyObject *payload = PyTuple_GET_ITEM(spec, 2);
    if (op == OP_CALL) {  /* on the original value (cased) or the lower-cased one, not both */
        PyObject *s = cased ? flat_get(ctx->orig, field) : low_get(ctx, field);
        if (s == NULL) return PyErr_Occurred() ? -1 : 0;
        if (!PyTuple_Check(s)) return call_value(payload, s);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(s); i++) {  /* any element of a list-valued field */
            int r = call_value(payload, PyTuple_GET_ITEM(s, i));
            if (r != 0) return r;
        }
        return 0;
    }
    PyObject *v = low_get(ctx, field);
    if (v == NULL && PyErr_Occurred()) return -1;
    if (!cased && op >= OP_EQ && op <= OP_ENDSWITH) {  /* the usual case: only the lower-cased value counts */
        if (v == NULL) return 0;
        if (PyUnicode_Check(v)) return atom_value(op, payload, 0, v, NULL);
    }
    PyObject *o = flat_get(ctx->orig, field);
    if (o == NULL && PyErr_Occurred()) return -1;
    if (v != NULL && PyTuple_Check(v)) {  /* a list-valued field matches when any element does */
        if (o == NULL || !PyTuple_Check(o) || PyTuple_GET_SIZE(o) != PyTuple_GET_SIZE(v)) {
            PyErr_SetString(PyExc_ValueError, "lower-cased and original views disagree");
            return -1;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(v);
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *vi = PyTuple_GET_ITEM(v, i), *oi = PyTuple_GET_ITEM(o, i);
            int r = op == OP_PYTHON ? python_atom(ctx, index, vi, oi, payload != Py_False)
                                    : atom_value(op, payload, cased, vi, oi);
            if (r != 0) return r;
        }
        return 0;
    }
    return op == OP_PYTHON ? python_atom(ctx, index, v, o, payload != Py_False) : atom_value(op, payload, cased, v, o);
}

/* The fields of the atoms that held so far (borrowed from the trees), repeats included. */
typedef struct {
    PyObject **items;
    Py_ssize_t n, cap;
    PyObject *items0[32];
} Trace;

static void trace_init(Trace *t) {
    t->items = t->items0, t->n = 0, t->cap = 32;
}

static void trace_free(Trace *t) {
    if (t->items != t->items0) PyMem_Free(t->items);
}

static int trace_push(Trace *t, PyObject *field) {
    if (t->n == t->cap) {
        PyObject **items = PyMem_Malloc((size_t)t->cap * 2 * sizeof(PyObject *));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(items, t->items, (size_t)t->n * sizeof(PyObject *));
        if (t->items != t->items0) PyMem_Free(t->items);
        t->items = items, t->cap *= 2;
    }
    t->items[t->n++] = field;
    return 0;
}

/* New tuple of the traced fields, sorted, each once. */
static PyObject *trace_fields(Trace *t) {
    PyObject **f = t->items;
    Py_ssize_t n = 0;
    for (Py_ssize_t i = 0; i < t->n; i++) {  /* insertion sort with repeats dropped: a few fields */
        PyObject *x = t->items[i];
        Py_ssize_t j = n;
        int dup = 0;
        while (j > 0) {
            int c = PyUnicode_Compare(f[j - 1], x);
            if (c == -1 && PyErr_Occurred()) return NULL;
            if (c == 0) dup = 1;
            if (c <= 0) break;
            j--;
        }
        if (dup) continue;
        memmove(&f[j + 1], &f[j], (size_t)(n - j) * sizeof(PyObject *));
        f[j] = x;
        n++;
    }
    PyObject *out = PyTuple_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(out, i, Py_NewRef(f[i]));
    return out;
}

/* Trees (codegen): ("a", atom index, field or None), ("&", children), ("|", children), ("!", child).
 * With `trace` (else NULL), the fields of atoms that held outside negations are pushed on it: the evidence of a
 * hit; a branch that fails takes its fields back. 1, 0 or -1. */
static int eval_tree(Ctx *ctx, PyObject *tree, Trace *trace) {
    if (!PyTuple_CheckExact(tree) || PyTuple_GET_SIZE(tree) < 2 || !PyUnicode_Check(PyTuple_GET_ITEM(tree, 0))
        || PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(tree, 0)) != 1) {
        PyErr_SetString(PyExc_TypeError, "malformed rule tree");
        return -1;
    }
    Py_UCS4 k = PyUnicode_READ_CHAR(PyTuple_GET_ITEM(tree, 0), 0);
    if (k == 'a') {
        PyObject *field = PyTuple_GET_SIZE(tree) == 3 ? PyTuple_GET_ITEM(tree, 2) : NULL;
        if (field == NULL || (field != Py_None && !PyUnicode_Check(field))) {
            PyErr_SetString(PyExc_TypeError, "malformed rule tree");
            return -1;
        }
        int r = eval_atom(ctx, tree);
        if (r == 1 && trace != NULL && field != Py_None && trace_push(trace, field) < 0) return -1;
        return r;
    }
    if (k == '!') {
        int r = eval_tree(ctx, PyTuple_GET_ITEM(tree, 1), NULL);
        return r < 0 ? r : !r;
    }
    PyObject *children = PyTuple_GET_ITEM(tree, 1);
    if ((k != '&' && k != '|') || !PyTuple_CheckExact(children)) {
        PyErr_SetString(PyExc_TypeError, "malformed rule tree");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(children);
    int want = k == '|';  /* or: stop at the first true child; and: at the first false one */
    Py_ssize_t mark = trace != NULL ? trace->n : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = eval_tree(ctx, PyTuple_GET_ITEM(children, i), trace);
        if (r < 0) return r;
        if (r == want) {
            if (!want && trace != NULL) trace->n = mark;  /* and: a false child; so a false branch leaves nothing */
            return r;
        }
    }
    return !want;
}

PyDoc_STRVAR(trace_doc,
"trace(tree, low, orig, specs, atoms) -> set[str] | None\n\n"
"The fields whose tests held (outside negations) when `tree` matches the event; None when it does not.");

static PyObject *trace(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5 || !PyDict_Check(args[1]) || !PyDict_Check(args[2]) || !PyList_CheckExact(args[3])
        || !PyList_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "trace(tree, low: dict, orig: dict, specs: list, atoms: list)");
        return NULL;
    }
    Flat orig;  /* a caller's dict: nothing to free */
    flat_init(&orig, args[2]);
    Ctx ctx;
    ctx_init(&ctx, args[1], &orig, args[3], args[4]);
    Trace t;
    trace_init(&t);
    int r = eval_tree(&ctx, args[0], &t);
    PyObject *out = NULL;
    if (r == 1 && (out = PySet_New(NULL)) != NULL) {
        for (Py_ssize_t i = 0; i < t.n; i++) {
            if (PySet_Add(out, t.items[i]) < 0) {
                Py_CLEAR(out);
                break;
            }
        }
    } else if (r == 0) {
        out = Py_NewRef(Py_None);
    }
    trace_free(&t);
    ctx_free(&ctx);
    return out;
}

PyDoc_STRVAR(candidates_doc,
"candidates(low, lookups) -> set[int]\n\n"
"Binding indexes an event (its lower-cased view) may match, from a bucket's lookups: always, equality (eq:\n"
"(field, {value: ids})), literal search (sub: (field, (literals, ids, anchors, automaton, Literals|None))),\n"
"presence (has: (field, ids)), non-ASCII values (unicode: (field|None, ids)) and keywords (a sub spec|None).");

static PyObject *candidates(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "candidates(low: dict, lookups: tuple)");
        return NULL;
    }
    Marks found;
    marks_init(&found);
    PyObject *out = NULL;
    Flat orig;
    flat_init(&orig, args[0]);
    Ctx ctx;  /* lower-cased values read through folded tables alike */
    ctx_init(&ctx, args[0], &orig, NULL, NULL);
    if (bucket_candidates(&found, &ctx, args[1]) == 0 && (out = PySet_New(NULL)) != NULL) {
        for (Py_ssize_t i = 0; i < found.n; i++) {
            PyObject *id = PyLong_FromSsize_t(found.ids[i]);
            if (id == NULL || PySet_Add(out, id) < 0) {
                Py_XDECREF(id);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(id);
        }
    }
    marks_free(&found);
    ctx_free(&ctx);
    return out;
}

PyDoc_STRVAR(run_doc,
"run(low, orig, lookups, trees, specs, atoms) -> list[int]\n\n"
"The bindings of one bucket that match an event, in ascending order: candidates from the bucket's lookups\n"
"(always, eq, sub, has, unicode, keyword), each then tested by walking its tree.");

/* Append to the list *out (made at the first match) the bindings of one bucket that match the event, in ascending
 * order; with `traces` (else NULL), to the list *traces each one's evidence: the sorted tuple of the fields whose
 * tests held. */
static int run_bucket(Ctx *ctx, PyObject *lookups, PyObject *trees, PyObject **out, PyObject **traces) {
    Marks found;
    marks_init(&found);
    Trace t;
    trace_init(&t);
    int rc = bucket_candidates(&found, ctx, lookups);
    for (Py_ssize_t i = 1; rc == 0 && i < found.n; i++) {  /* a few candidates, mostly in order: insertion sort */
        Py_ssize_t x = found.ids[i], j = i;
        while (j > 0 && found.ids[j - 1] > x) {
            found.ids[j] = found.ids[j - 1];
            j--;
        }
        found.ids[j] = x;
    }
    for (Py_ssize_t i = 0; rc == 0 && i < found.n; i++) {
        Py_ssize_t n = found.ids[i];
        if (n >= PyList_GET_SIZE(trees)) {
            PyErr_SetString(PyExc_IndexError, "binding index out of range");
            rc = -1;
            break;
        }
        t.n = 0;
        int r = eval_tree(ctx, PyList_GET_ITEM(trees, n), traces != NULL ? &t : NULL);
        if (r < 0) {
            rc = -1;
        } else if (r) {
            if (*out == NULL && (*out = PyList_New(0)) == NULL) rc = -1;
            if (rc == 0 && traces != NULL && *traces == NULL && (*traces = PyList_New(0)) == NULL) rc = -1;
            PyObject *id = rc == 0 ? PyLong_FromSsize_t(n) : NULL;
            if (id == NULL || PyList_Append(*out, id) < 0) rc = -1;
            Py_XDECREF(id);
            if (rc == 0 && traces != NULL) {
                PyObject *fields = trace_fields(&t);
                if (fields == NULL || PyList_Append(*traces, fields) < 0) rc = -1;
                Py_XDECREF(fields);
            }
        }
    }
    trace_free(&t);
    marks_free(&found);
    return rc;
}

static PyObject *run(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6 || !PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyList_CheckExact(args[3])
        || !PyList_CheckExact(args[4]) || !PyList_CheckExact(args[5])) {
        PyErr_SetString(PyExc_TypeError, "run(low: dict, orig: dict, lookups, trees: list, specs: list, atoms: list)");
        return NULL;
    }
    Flat orig;
    flat_init(&orig, args[1]);
    Ctx ctx;
    ctx_init(&ctx, args[0], &orig, args[4], args[5]);
    PyObject *out = NULL;
    int rc = run_bucket(&ctx, args[2], args[3], &out, NULL);
    ctx_free(&ctx);
    if (rc < 0) {
        Py_XDECREF(out);
        return NULL;
    }
    return out != NULL ? out : PyList_New(0);
}

/* ---- EvtxMatcher: a rule set's per-record path for pyevtx records -------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *routes;    /* dict: (lower-cased Channel, EventID) -> tuple of bucket lookups */
    PyObject *trees, *specs, *atoms, *rule_of;  /* lists, by binding (rule_of: the rule index of each) */
    PyObject *hit;       /* (rule index, evidence) -> a hit */
    PyObject *general;   /* record -> (hits, flat event): records the fast path leaves, and unrouted sources */
    PyObject *last_channel, *last_event_id, *last_route;  /* the last record's route (its original Channel):
                                                            files repeat a source */
} EvtxMatcher;

static void matcher_dealloc(EvtxMatcher *self) {
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->routes);
    Py_CLEAR(self->trees);
    Py_CLEAR(self->specs);
    Py_CLEAR(self->atoms);
    Py_CLEAR(self->rule_of);
    Py_CLEAR(self->hit);
    Py_CLEAR(self->general);
    Py_CLEAR(self->last_channel);
    Py_CLEAR(self->last_event_id);
    Py_CLEAR(self->last_route);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int matcher_traverse(EvtxMatcher *self, visitproc visit, void *arg) {
    Py_VISIT(self->routes);
    Py_VISIT(self->trees);
    Py_VISIT(self->specs);
    Py_VISIT(self->atoms);
    Py_VISIT(self->rule_of);
    Py_VISIT(self->hit);
    Py_VISIT(self->general);
    Py_VISIT(self->last_channel);
    Py_VISIT(self->last_event_id);
    Py_VISIT(self->last_route);
    return 0;
}

static PyObject *matcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *routes, *trees, *specs, *atoms, *rule_of, *hit, *general;
    static char *kwlist[] = {"routes", "trees", "specs", "atoms", "rule_of", "hit", "general", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!O!O!O!OO:EvtxMatcher", kwlist, &PyDict_Type, &routes,
                                     &PyList_Type, &trees, &PyList_Type, &specs, &PyList_Type, &atoms,
                                     &PyList_Type, &rule_of, &hit, &general)) {
        return NULL;
    }
    if (!PyCallable_Check(hit) || !PyCallable_Check(general)) {
        PyErr_SetString(PyExc_TypeError, "EvtxMatcher: hit and general must be callable");
        return NULL;
    }
    if (PyList_GET_SIZE(rule_of) != PyList_GET_SIZE(trees)) {
        PyErr_SetString(PyExc_ValueError, "EvtxMatcher: one rule index per tree");
        return NULL;
    }
    EvtxMatcher *self = (EvtxMatcher *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->routes = Py_NewRef(routes), self->trees = Py_NewRef(trees), self->specs = Py_NewRef(specs);
    self->atoms = Py_NewRef(atoms), self->rule_of = Py_NewRef(rule_of), self->hit = Py_NewRef(hit);
    self->general = Py_NewRef(general);
    return (PyObject *)self;
}

/* a and b (each a str or None) hold the same text. */
static int same_text(PyObject *a, PyObject *b) {
    if (a == b) return 1;
    return PyUnicode_Check(a) && PyUnicode_Check(b) && same_str(a, b);
}

/* One hit per rule among the matching bindings (ascending), with its binding's evidence: a new list. */
static PyObject *rule_hits(EvtxMatcher *self, PyObject *ids, PyObject *traces) {
    PyObject *hits = PyList_New(0);
    if (hits == NULL) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(ids);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t binding = PyLong_AsSsize_t(PyList_GET_ITEM(ids, i));
        if (binding < 0 || binding >= PyList_GET_SIZE(self->rule_of)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "binding index out of range");
            goto fail;
        }
        PyObject *rule = PyList_GET_ITEM(self->rule_of, binding);
        int seen = 0;  /* a rule bound twice (two sources for one event) hits once: its first binding */
        for (Py_ssize_t j = 0; j < i && !seen; j++) {
            PyObject *other = PyList_GET_ITEM(self->rule_of, PyLong_AsSsize_t(PyList_GET_ITEM(ids, j)));
            seen = PyObject_RichCompareBool(other, rule, Py_EQ);
            if (seen < 0) goto fail;
        }
        if (seen) continue;
        PyObject *args[2] = {rule, PyList_GET_ITEM(traces, i)};
        PyObject *hit = PyObject_Vectorcall(self->hit, args, 2, NULL);
        if (hit == NULL) goto fail;
        int rc = PyList_Append(hits, hit);
        Py_DECREF(hit);
        if (rc < 0) goto fail;
    }
    return hits;
fail:
    Py_DECREF(hits);
    return NULL;
}

/* Match one record: 0 with *hits (a new list, or NULL when nothing hits) and *flat (a new reference to the flat
 * event, a dict: made for every record with `every_flat`, else only when something hits, NULL otherwise); -1
 * on error. The general path gives both for what the fast path leaves. */
static int match_record(EvtxMatcher *self, PyObject *record, PyObject **hits, PyObject **flat, int every_flat) {
    *hits = *flat = NULL;
    PyObject *general = NULL, *ids = NULL, *traces = NULL;
    Flat orig;
    flat_init(&orig, NULL);
    Ctx ctx;
    ctx_init(&ctx, NULL, &orig, self->specs, self->atoms);
    int multi, rc = flatten_record(record, &orig, &multi);
    (void)multi;  /* list-valued fields: the tree walk tests each element */
    if (rc == FAILED) {
        rc = -1;
        goto done;
    }
    if (rc != 0) {
        rc = -1;
        goto general;
    }
    rc = -1;
    PyObject *channel = flat_get(&orig, s_channel);
    if (channel == NULL && PyErr_Occurred()) goto done;
    PyObject *event_id = flat_get(&orig, s_eventid);
    if (event_id == NULL && PyErr_Occurred()) goto done;
    PyObject *route = NULL;
    if ((channel == NULL || PyUnicode_Check(channel)) && (event_id == NULL || PyUnicode_Check(event_id))) {
        if (channel == NULL) channel = Py_None;
        if (event_id == NULL) event_id = Py_None;
        if (self->last_route != NULL && same_text(channel, self->last_channel)
            && same_text(event_id, self->last_event_id)) {
            route = self->last_route;
        } else {
            PyObject *source = channel == Py_None ? Py_None : low_get(&ctx, s_channel);  /* routes: lower-cased */
            if (source == NULL) goto done;
            PyObject *key = PyTuple_Pack(2, source, event_id);
            if (key == NULL) goto done;
            route = PyDict_GetItemWithError(self->routes, key);
            Py_DECREF(key);
            if (route == NULL && PyErr_Occurred()) goto done;
            if (route != NULL) {  /* routes are only ever added: the last one stays valid */
                Py_XSETREF(self->last_channel, Py_NewRef(channel));
                Py_XSETREF(self->last_event_id, Py_NewRef(event_id));
                Py_XSETREF(self->last_route, Py_NewRef(route));
            }
        }
    }  /* else a list-valued source: the general path picks its first value */
    if (route == NULL) goto general;  /* a source not routed yet: the general path matches and routes it */
    if (!PyTuple_CheckExact(route)) {
        PyErr_SetString(PyExc_TypeError, "a route must be a tuple of bucket lookups");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(route); i++) {
        if (run_bucket(&ctx, PyTuple_GET_ITEM(route, i), self->trees, &ids, &traces) < 0) goto done;
    }
    if (ids != NULL && (*hits = rule_hits(self, ids, traces)) == NULL) goto done;
    if (*hits != NULL || every_flat) {
        PyObject *d = flat_dict(&orig);
        if (d == NULL) {
            Py_CLEAR(*hits);
            goto done;
        }
        *flat = Py_NewRef(d);
    }
    rc = 0;
    goto done;
general:
    general = PyObject_CallOneArg(self->general, record);
    if (general == NULL) goto done;
    if (!PyTuple_Check(general) || PyTuple_GET_SIZE(general) != 2 || !PyList_Check(PyTuple_GET_ITEM(general, 0))) {
        PyErr_SetString(PyExc_TypeError, "the general path must give (hits: list, flat event)");
        goto done;
    }
    if (PyList_GET_SIZE(PyTuple_GET_ITEM(general, 0)) > 0) *hits = Py_NewRef(PyTuple_GET_ITEM(general, 0));
    *flat = Py_NewRef(PyTuple_GET_ITEM(general, 1));
    rc = 0;
done:
    Py_XDECREF(general);
    Py_XDECREF(ids);
    Py_XDECREF(traces);
    ctx_free(&ctx);
    flat_free(&orig);
    return rc;
}

static PyObject *matcher_call(EvtxMatcher *self, PyObject *args, PyObject *kwds) {
    PyObject *record;
    static char *kwlist[] = {"record", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:EvtxMatcher", kwlist, &record)) return NULL;
    PyObject *hits, *flat;
    if (match_record(self, record, &hits, &flat, 1) < 0) return NULL;
    if (hits == NULL && (hits = PyList_New(0)) == NULL) {
        Py_DECREF(flat);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(2, hits, flat);
    Py_DECREF(hits);
    Py_DECREF(flat);
    return out;
}

static PyObject *s_data;

PyDoc_STRVAR(matcher_scan_doc,
"scan(records, loads) -> (events, found, error)\n\n"
"Match every record of a pyevtx `records_json()` iterator, each decoded with `loads`: the number of records\n"
"read, the (hits, flat event) of those that some rule hits, and the OSError, RuntimeError or ValueError that\n"
"stopped reading or decoding (None when the records ran out). Errors while matching are raised.");

/* The pending exception, if reading or decoding raised it (OSError, RuntimeError, ValueError), into *error: 0;
 * -1 (still pending) for any other. */
static int take_input_error(PyObject **error) {
    if (!PyErr_ExceptionMatches(PyExc_OSError) && !PyErr_ExceptionMatches(PyExc_RuntimeError)
        && !PyErr_ExceptionMatches(PyExc_ValueError)) {
        return -1;
    }
    PyObject *type, *tb;
    PyErr_Fetch(&type, error, &tb);
    PyErr_NormalizeException(&type, error, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return 0;
}

static PyObject *matcher_scan(EvtxMatcher *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "scan(records, loads)");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) return NULL;
    PyObject *found = PyList_New(0), *error = NULL;
    Py_ssize_t events = 0;
    if (found == NULL) goto fail;
    for (;;) {
        PyObject *record = PyIter_Next(it);
        if (record == NULL) {
            if (PyErr_Occurred() && take_input_error(&error) < 0) goto fail;
            break;
        }
        PyObject *data = PyObject_GetItem(record, s_data);
        Py_DECREF(record);
        if (data == NULL) goto fail;
        PyObject *event = PyObject_CallOneArg(args[1], data);
        Py_DECREF(data);
        if (event == NULL) {
            if (take_input_error(&error) < 0) goto fail;
            break;
        }
        events++;
        PyObject *hits, *flat;
        int rc = match_record(self, event, &hits, &flat, 0);
        Py_DECREF(event);
        if (rc < 0) goto fail;
        if (hits != NULL) {  /* only what some rule hits is kept */
            PyObject *pair = PyTuple_Pack(2, hits, flat);
            rc = pair == NULL ? -1 : PyList_Append(found, pair);
            Py_XDECREF(pair);
        }
        Py_XDECREF(hits);
        Py_XDECREF(flat);
        if (rc < 0) goto fail;
    }
    Py_DECREF(it);
    PyObject *out = Py_BuildValue("(nNO)", events, found, error ? error : Py_None);
    Py_XDECREF(error);
    return out;
fail:
    Py_DECREF(it);
    Py_XDECREF(found);
    Py_XDECREF(error);
    return NULL;
}

static PyMethodDef matcher_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))matcher_scan, METH_FASTCALL, matcher_scan_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EvtxMatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vigil.detect._speedups.EvtxMatcher",
    .tp_basicsize = sizeof(EvtxMatcher),
    .tp_dealloc = (destructor)matcher_dealloc,
    .tp_call = (ternaryfunc)matcher_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)matcher_traverse,
    .tp_doc = "EvtxMatcher(routes, trees, specs, atoms, rule_of, hit, general): a rule set's path for pyevtx\n"
              "records. Calling it with a decoded record gives (hits, flat event); `scan` matches a record iterator.",
    .tp_methods = matcher_methods,
    .tp_new = matcher_new,
};

static PyMethodDef methods[] = {
    {"evtx_views", (PyCFunction)evtx_views, METH_O, evtx_views_doc},
    {"candidates", (PyCFunction)(void (*)(void))candidates, METH_FASTCALL, candidates_doc},
    {"run", (PyCFunction)(void (*)(void))run, METH_FASTCALL, run_doc},
    {"trace", (PyCFunction)(void (*)(void))trace, METH_FASTCALL, trace_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "vigil.detect._speedups", "The matcher's per-event hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

static PyObject *intern(const char *s) {
    return PyUnicode_InternFromString(s);
}

PyMODINIT_FUNC PyInit__speedups(void) {
    if (!(s_event = intern("Event")) || !(s_system = intern("System")) || !(s_eventdata = intern("EventData"))
        || !(s_userdata = intern("UserData")) || !(s_attributes = intern("#attributes"))
        || !(s_text = intern("#text")) || !(s_xmlns = intern("xmlns")) || !(s_true = intern("true"))
        || !(s_false = intern("false")) || !(s_underscore = intern("_")) || !(s_lower = intern("lower"))
        || !(s_channel = intern("Channel")) || !(s_eventid = intern("EventID"))) {
        return NULL;
    }
    for (int c = 0; c < 256; c++) {
        lower_table[c] = (Py_UCS1)(((c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7)) ? c + 32 : c);
    }
    if (PyType_Ready(&LiteralsType) < 0 || PyType_Ready(&EvtxMatcherType) < 0
        || (joined_names = PyDict_New()) == NULL || (s_data = intern("data")) == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Literals", (PyObject *)&LiteralsType) < 0
        || PyModule_AddObjectRef(m, "EvtxMatcher", (PyObject *)&EvtxMatcherType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
