/* The matcher's per-event hot path in C: flatten a pyevtx record into string views, and pick an index
 * bucket's candidate rules. Each function mirrors a Python reference (vigil.detect.events._evtx_views_fast,
 * vigil.detect.candidates.Bucket) that stays the fallback and the oracle the tests compare against.
 *
 * Written against the stable C API of CPython 3.11+; no allocation outlives a call except the results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Signals "a record shape the fast path leaves to the general one": the caller falls back. */
#define UNUSUAL 1
#define FAILED (-1)

static PyObject *s_event, *s_system, *s_eventdata, *s_userdata, *s_attributes, *s_text, *s_xmlns;
static PyObject *s_true, *s_false, *s_underscore, *s_lower;

/* value -> new reference to its text as rules see it, or NULL with *status set (UNUSUAL or FAILED). */
static PyObject *scalar(PyObject *value, int *status) {
    if (PyUnicode_CheckExact(value)) {
        return Py_NewRef(value);
    }
    if (PyLong_CheckExact(value)) {
        PyObject *s = PyObject_Str(value);
        if (s == NULL) *status = FAILED;
        return s;
    }
    if (value == Py_True) return Py_NewRef(s_true);
    if (value == Py_False) return Py_NewRef(s_false);
    *status = UNUSUAL;
    return NULL;
}

static PyObject *joined(PyObject *a, PyObject *b) {
    PyObject *ab = PyUnicode_Concat(a, s_underscore);
    if (ab == NULL) return NULL;
    PyObject *out = PyUnicode_Concat(ab, b);
    Py_DECREF(ab);
    return out;
}

/* Put key -> text of value into orig, counting it in *made. 0, UNUSUAL or FAILED. */
static int put(PyObject *orig, PyObject *key, PyObject *value, Py_ssize_t *made) {
    int status = 0;
    PyObject *text = scalar(value, &status);
    if (text == NULL) return status;
    int rc = PyDict_SetItem(orig, key, text);
    Py_DECREF(text);
    if (rc < 0) return FAILED;
    (*made)++;
    return 0;
}

static int has_char(PyObject *s, Py_UCS4 ch) {
    return PyUnicode_FindChar(s, ch, 0, PyUnicode_GET_LENGTH(s), 1) >= 0;
}

/* The System section: fields one level deep, attributes as Name_Attribute, "#text" as the field itself. */
static int flatten_system(PyObject *orig, PyObject *system) {
    Py_ssize_t pos = 0, made = 0;
    PyObject *key, *value;
    while (PyDict_Next(system, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) return UNUSUAL;
        if (has_char(key, '#')) return UNUSUAL;
        if (value == Py_None) continue;
        if (!PyDict_CheckExact(value)) {
            int rc = put(orig, key, value, &made);
            if (rc) return rc;
            continue;
        }
        Py_ssize_t sub_pos = 0;
        PyObject *sub, *v;
        while (PyDict_Next(value, &sub_pos, &sub, &v)) {
            if (!PyUnicode_Check(sub)) return UNUSUAL;
            int is_attrs = PyUnicode_Compare(sub, s_attributes);
            if (is_attrs == -1 && PyErr_Occurred()) return FAILED;
            if (is_attrs == 0) {
                if (!PyDict_CheckExact(v)) return UNUSUAL;
                Py_ssize_t apos = 0;
                PyObject *attr, *a;
                while (PyDict_Next(v, &apos, &attr, &a)) {
                    if (a == Py_None) continue;
                    if (!PyUnicode_Check(attr)) return UNUSUAL;
                    int skip = PyUnicode_Compare(attr, s_xmlns);
                    if (skip == -1 && PyErr_Occurred()) return FAILED;
                    if (skip == 0) continue;
                    PyObject *name = joined(key, attr);
                    if (name == NULL) return FAILED;
                    int rc = put(orig, name, a, &made);
                    Py_DECREF(name);
                    if (rc) return rc;
                }
                continue;
            }
            if (v == Py_None) continue;
            int is_text = PyUnicode_Compare(sub, s_text);
            if (is_text == -1 && PyErr_Occurred()) return FAILED;
            if (is_text == 0) {
                int rc = put(orig, key, v, &made);
                if (rc) return rc;
                continue;
            }
            PyObject *name = joined(key, sub);
            if (name == NULL) return FAILED;
            int rc = put(orig, name, v, &made);
            Py_DECREF(name);
            if (rc) return rc;
        }
    }
    /* A repeated name (a field and an attribute made the same key), or a spaced one: the general path. */
    if (PyDict_GET_SIZE(orig) != made) return UNUSUAL;
    pos = 0;
    while (PyDict_Next(orig, &pos, &key, &value)) {
        if (has_char(key, ' ')) return UNUSUAL;
    }
    return 0;
}

static int flatten_data(PyObject *orig, PyObject *data) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(data, &pos, &key, &value)) {
        if (!PyUnicode_Check(key)) return UNUSUAL;
        if (has_char(key, ' ')) return UNUSUAL;  /* "Threat Name": the general path renames it */
        int attrs = PyUnicode_Compare(key, s_attributes);
        if (attrs == -1 && PyErr_Occurred()) return FAILED;
        if (attrs == 0) return UNUSUAL;
        if (value == Py_None) continue;
        int contained = PyDict_Contains(orig, key);
        if (contained < 0) return FAILED;
        if (contained) return UNUSUAL;  /* the same name as a System field: kept as a list by the general path */
        int status = 0;
        PyObject *text = scalar(value, &status);
        if (text == NULL) return status;
        int rc = PyDict_SetItem(orig, key, text);
        Py_DECREF(text);
        if (rc < 0) return FAILED;
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

static PyObject *lowered_view(PyObject *orig) {
    PyObject *low = PyDict_New();
    if (low == NULL) return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(orig, &pos, &key, &value)) {
        PyObject *l = lowered(value);
        if (l == NULL || PyDict_SetItem(low, key, l) < 0) {
            Py_XDECREF(l);
            Py_DECREF(low);
            return NULL;
        }
        Py_DECREF(l);
    }
    return low;
}

PyDoc_STRVAR(evtx_views_doc,
"evtx_views(record) -> (lower-cased, original, False) | None\n\n"
"The string views of a pyevtx JSON record of the usual shape; None when the general path must do it.");

static PyObject *evtx_views(PyObject *module, PyObject *record) {
    (void)module;
    if (!PyDict_CheckExact(record)) Py_RETURN_NONE;
    PyObject *event = PyDict_GetItemWithError(record, s_event);
    if (event == NULL) {
        if (PyErr_Occurred()) return NULL;
        event = record;
    }
    if (!PyDict_CheckExact(event)) Py_RETURN_NONE;
    PyObject *user = PyDict_GetItemWithError(event, s_userdata);
    if (user != NULL && user != Py_None) Py_RETURN_NONE;
    if (user == NULL && PyErr_Occurred()) return NULL;
    PyObject *orig = PyDict_New();
    if (orig == NULL) return NULL;
    int rc = 0;
    PyObject *system = PyDict_GetItemWithError(event, s_system);
    if (system == NULL && PyErr_Occurred()) rc = FAILED;
    else if (system != NULL && system != Py_None) {
        rc = PyDict_CheckExact(system) ? flatten_system(orig, system) : UNUSUAL;
    }
    if (rc == 0) {
        PyObject *data = PyDict_GetItemWithError(event, s_eventdata);
        if (data == NULL && PyErr_Occurred()) rc = FAILED;
        else if (data != NULL && data != Py_None) {
            rc = PyDict_CheckExact(data) ? flatten_data(orig, data) : UNUSUAL;
        }
    }
    if (rc != 0) {
        Py_DECREF(orig);
        if (rc == FAILED) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *low = lowered_view(orig);
    if (low == NULL) {
        Py_DECREF(orig);
        return NULL;
    }
    PyObject *out = PyTuple_Pack(3, low, orig, Py_False);
    Py_DECREF(low);
    Py_DECREF(orig);
    return out;
}

/* Add every element of the tuple `ids` to the set `found`. */
static int add_ids(PyObject *found, PyObject *ids) {
    if (!PyTuple_CheckExact(ids)) {
        PyErr_SetString(PyExc_TypeError, "candidate ids must be a tuple");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ids);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PySet_Add(found, PyTuple_GET_ITEM(ids, i)) < 0) return -1;
    }
    return 0;
}

/* eq: one value of a field looked up in its table. */
static int eq_value(PyObject *found, PyObject *table, PyObject *v) {
    PyObject *ids = PyDict_GetItemWithError(table, v);
    if (ids == NULL) return PyErr_Occurred() ? -1 : 0;
    return add_ids(found, ids);
}

/* sub: (literals, ids per literal, anchors or None, automaton iter or None) searched in one value. */
static int sub_value(PyObject *found, PyObject *spec, PyObject *v) {
    PyObject *literals = PyTuple_GET_ITEM(spec, 0);
    PyObject *ids = PyTuple_GET_ITEM(spec, 1);
    PyObject *anchors = PyTuple_GET_ITEM(spec, 2);
    PyObject *search = PyTuple_GET_ITEM(spec, 3);
    if (search != Py_None) {
        PyObject *it = PyObject_CallOneArg(search, v);
        if (it == NULL) return -1;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            /* pyahocorasick yields (end position, value) */
            int rc = PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2
                ? add_ids(found, PyTuple_GET_ITEM(item, 1)) : (PyErr_SetString(PyExc_TypeError, "bad hit"), -1);
            Py_DECREF(item);
            if (rc < 0) {
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(it);
        return PyErr_Occurred() ? -1 : 0;
    }
    if (anchors != Py_None) {
        Py_ssize_t n = PyTuple_GET_SIZE(anchors), i;
        for (i = 0; i < n; i++) {
            int c = PyUnicode_Contains(v, PyTuple_GET_ITEM(anchors, i));
            if (c < 0) return -1;
            if (c) break;
        }
        if (i == n) return 0;  /* no anchor: none of the literals either */
    }
    Py_ssize_t n = PyTuple_GET_SIZE(literals);
    for (Py_ssize_t i = 0; i < n; i++) {
        int c = PyUnicode_Contains(v, PyTuple_GET_ITEM(literals, i));
        if (c < 0) return -1;
        if (c && add_ids(found, PyTuple_GET_ITEM(ids, i)) < 0) return -1;
    }
    return 0;
}

typedef int (*value_test)(PyObject *found, PyObject *spec, PyObject *v);

/* Run `test` on each (field, spec) of `pairs` whose field has a value: a string, or a tuple of strings. */
static int each_field(PyObject *found, PyObject *low, PyObject *pairs, value_test test) {
    Py_ssize_t n = PyTuple_GET_SIZE(pairs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, i);
        PyObject *v = PyDict_GetItemWithError(low, PyTuple_GET_ITEM(pair, 0));
        if (v == NULL) {
            if (PyErr_Occurred()) return -1;
            continue;
        }
        PyObject *spec = PyTuple_GET_ITEM(pair, 1);
        if (PyUnicode_Check(v)) {
            if (test(found, spec, v) < 0) return -1;
        } else if (PyTuple_Check(v)) {
            Py_ssize_t m = PyTuple_GET_SIZE(v);
            for (Py_ssize_t j = 0; j < m; j++) {
                if (test(found, spec, PyTuple_GET_ITEM(v, j)) < 0) return -1;
            }
        }
    }
    return 0;
}

PyDoc_STRVAR(candidates_doc,
"candidates(low, always, eq, sub, has) -> set\n\n"
"Binding indexes an event (its lower-cased view) may match: `always`, then by field equality (eq: (field,\n"
"{value: ids})), literal search (sub: (field, (literals, ids, anchors|None, automaton iter|None))) and\n"
"presence (has: (field, ids)). Every table is a tuple, every ids a tuple of ints.");

static PyObject *candidates(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyTuple_CheckExact(args[2]) || !PyTuple_CheckExact(args[3])
        || !PyTuple_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "candidates(low: dict, always, eq: tuple, sub: tuple, has: tuple)");
        return NULL;
    }
    PyObject *low = args[0];
    PyObject *found = PySet_New(args[1]);
    if (found == NULL) return NULL;
    if (each_field(found, low, args[2], eq_value) < 0 || each_field(found, low, args[3], sub_value) < 0) {
        Py_DECREF(found);
        return NULL;
    }
    PyObject *has = args[4];
    Py_ssize_t n = PyTuple_GET_SIZE(has);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyTuple_GET_ITEM(has, i);
        int c = PyDict_Contains(low, PyTuple_GET_ITEM(pair, 0));
        if (c < 0 || (c && add_ids(found, PyTuple_GET_ITEM(pair, 1)) < 0)) {
            Py_DECREF(found);
            return NULL;
        }
    }
    return found;
}

static PyMethodDef methods[] = {
    {"evtx_views", (PyCFunction)evtx_views, METH_O, evtx_views_doc},
    {"candidates", (PyCFunction)(void (*)(void))candidates, METH_FASTCALL, candidates_doc},
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
        || !(s_false = intern("false")) || !(s_underscore = intern("_")) || !(s_lower = intern("lower"))) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
