/* The zlib-stream inflater with early discard, in C.
 *
 * ZlibStream(max_size) is sharder/_codec.py's ZlibStreamInflater (one raw
 * inflate context per connection, the two-byte zlib header checked once, a
 * message split over websocket messages buffered until it ends with
 * 00 00 ff ff, the same errors with the same words) with the loop that calls
 * it moved in here too:
 *
 * next_document(messages, index, disabled) -> (index, document, dropped, top)
 *
 * inflates the data messages of ``messages`` from ``index`` until one gives a
 * document to parse, which it returns as bytes with the index after it. A
 * dispatch of a ``disabled`` event (a frozenset of bytes names) is dropped on
 * the way from a peek at its first bytes, without a Python object made for it:
 * ``dropped`` counts those and ``top`` is their highest sequence (-1 for none).
 * At the end of the list, or at a message that is not data (a close frame),
 * the document is None and the index points there. An error after some drops
 * is held back so the drops are returned first (document None, the index at
 * the message that failed) and raised by the next call.
 *
 * Why C: in Python a dropped event went through the shard's loop, the
 * inflater's method, zlib's decompress (a bytes object) and a regex match, all
 * of it about three times what inflating costs. Here it costs inflating and a
 * few comparisons. The inflated bytes go to one scratch buffer shared by every
 * inflater of the process (the GIL is held from inflate to copy, and no Python
 * code runs in between), so a thousand shards do not keep a thousand buffers.
 *
 * Inflating is zlib-ng's (third_party/zlib-ng, compiled in by setup.py): its
 * portable C inflate takes about 12 % less time per gateway message than zlib.
 *
 * ZlibStreamInflater.next_document is the same contract in Python; both must
 * agree on every input, errors included: tests/sharder/test_zlibstream.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include "zlib-ng.h"

#define TEXT 1
#define BINARY 2
#define SCRATCH_START 65536
#define SCRATCH_KEEP (1 << 20) /* a bigger buffer is given back after use */
#define MAX_SEQUENCE_DIGITS 18 /* the same bound as sharder/_peek.py's pattern */

static PyObject *ProtocolViolation; /* sharder.errors.ProtocolViolation */
static unsigned char *scratch;
static size_t scratch_size;

/* The names of a ``disabled`` set in an open-addressing table: a peek looks a
 * name up without making a bytes object for it (that and the set lookup were
 * 0.036 us of a dropped event's 0.73). Shared by every inflater of the process
 * and found by the set's identity: the shards give theirs one set object per
 * set of names (sharder/shard.py), so a handful of tables serve them all. */
typedef struct {
    const char *name; /* inside a bytes object of ``set`` */
    size_t len;
    uint32_t hash;
} NameSlot;

typedef struct {
    PyObject *set; /* a strong reference: the slots point into its names */
    NameSlot *slots;
    size_t mask;
    unsigned long long used; /* when it was last asked for, to evict the oldest */
} NameTable;

#define NAME_TABLES 4
static NameTable name_tables[NAME_TABLES];
static unsigned long long name_table_clock;

typedef struct {
    PyObject_HEAD
    zng_stream zs;
    int started;             /* the zlib header has been read */
    Py_ssize_t max_size;
    unsigned char *part;     /* a message split over websocket messages */
    size_t part_len, part_size;
    PyObject *failure;       /* the words of the last violation raised (a str) */
    int failure_code;        /* and its close code */
    int held;                /* that violation is held back while drops are returned */
} ZlibStream;

/* Raise the last violation again: ProtocolViolation(failure, failure_code). */
static void
raise_failure(ZlibStream *self)
{
    PyObject *exc =
        PyObject_CallFunction(ProtocolViolation, "Oi", self->failure, self->failure_code);
    if (exc != NULL) {
        PyErr_SetObject(ProtocolViolation, exc);
        Py_DECREF(exc);
    }
}

/* Raise ProtocolViolation(message, close_code), remembered for ``held``. */
static void
violation(ZlibStream *self, const char *message, int close_code)
{
    Py_XSETREF(self->failure, PyUnicode_FromString(message));
    self->failure_code = close_code;
    if (self->failure != NULL) {
        raise_failure(self);
    }
}

static int
is_zlib_header(unsigned char cmf, unsigned char flg)
{
    /* RFC 1950: deflate, a window of at most 32 KiB, no preset dictionary, valid check. */
    return (cmf & 0x0F) == 8 && (cmf >> 4) <= 7 && !(flg & 0x20) && ((cmf << 8) | flg) % 31 == 0;
}

static int
inflate_error(ZlibStream *self, int err)
{
    /* The words of zlib.error's message, as the Python inflater reports it. */
    const char *detail = self->zs.msg;
    if (detail == NULL) {
        detail = err == Z_BUF_ERROR      ? "incomplete or truncated stream"
                 : err == Z_STREAM_ERROR ? "inconsistent stream state"
                 : err == Z_DATA_ERROR   ? "invalid input data"
                                         : NULL;
    }
    char message[300];
    if (detail == NULL) {
        snprintf(message, sizeof message,
                 "corrupt zlib stream: Error %d while decompressing data", err);
    }
    else {
        snprintf(message, sizeof message,
                 "corrupt zlib stream: Error %d while decompressing data: %.200s", err, detail);
    }
    violation(self, message, 4000);
    return -1;
}

static int
grow_scratch(size_t at_least)
{
    size_t size = scratch_size ? scratch_size : SCRATCH_START;
    while (size < at_least) {
        size = size > SIZE_MAX / 2 ? at_least : size * 2;
    }
    unsigned char *bigger = PyMem_RawRealloc(scratch, size);
    if (bigger == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    scratch = bigger;
    scratch_size = size;
    return 0;
}

/* Inflate one whole message into scratch[0:*out_len]. */
static int
inflate_message(ZlibStream *self, const unsigned char *data, size_t len, size_t *out_len)
{
    if (!self->started) {
        if (len < 2 || !is_zlib_header(data[0], data[1])) {
            violation(self, "corrupt zlib stream: incorrect header check", 4000);
            return -1;
        }
        self->started = 1;
        data += 2;
        len -= 2;
    }
    const size_t limit = (size_t)self->max_size;
    size_t have = 0;
    zng_stream *zs = &self->zs;
    zs->next_in = (const uint8_t *)data;
    for (;;) {
        size_t room = (scratch_size < limit ? scratch_size : limit) - have;
        if (room == 0) {
            if (have >= limit) {
                if (len == 0) {
                    break;
                }
                violation(self, "inflated message exceeds the size limit", 1009);
                return -1;
            }
            if (grow_scratch(have + 1) < 0) {
                return -1;
            }
            continue;
        }
        uint32_t in_chunk = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
        uint32_t out_chunk = room > UINT32_MAX ? UINT32_MAX : (uint32_t)room;
        zs->avail_in = in_chunk;
        zs->next_out = scratch + have;
        zs->avail_out = out_chunk;
        int err = zng_inflate(zs, Z_SYNC_FLUSH);
        len -= in_chunk - zs->avail_in;
        have += out_chunk - zs->avail_out;
        if (err == Z_STREAM_END) {
            violation(self, "corrupt zlib stream: a final block ended it", 4000);
            return -1;
        }
        if (err != Z_OK && err != Z_BUF_ERROR) {
            return inflate_error(self, err);
        }
        if (len == 0 || (zs->avail_out != 0 && err == Z_BUF_ERROR)) {
            break;
        }
    }
    if (len != 0) { /* no progress with room to write: zlib wants what never comes */
        return inflate_error(self, Z_BUF_ERROR);
    }
    *out_len = have;
    return 0;
}

static uint32_t
name_hash(const char *name, size_t len)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        hash = (hash ^ (unsigned char)name[i]) * 16777619u;
    }
    return hash;
}

static void
name_table_clear(NameTable *table)
{
    PyMem_RawFree(table->slots);
    table->slots = NULL;
    Py_CLEAR(table->set);
}

/* The table of ``set`` (a frozenset of bytes), built if no table has it. */
static NameTable *
name_table(PyObject *set)
{
    NameTable *table = &name_tables[0];
    for (int i = 0; i < NAME_TABLES; i++) {
        if (name_tables[i].set == set) {
            name_tables[i].used = ++name_table_clock;
            return &name_tables[i];
        }
        if (name_tables[i].used < table->used) {
            table = &name_tables[i];
        }
    }
    size_t size = 8;
    while (size < 2 * (size_t)PySet_GET_SIZE(set)) {
        size *= 2;
    }
    NameSlot *slots = PyMem_RawCalloc(size, sizeof(NameSlot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *iterator = PyObject_GetIter(set);
    if (iterator == NULL) {
        PyMem_RawFree(slots);
        return NULL;
    }
    PyObject *key;
    while ((key = PyIter_Next(iterator)) != NULL) {
        if (!PyBytes_CheckExact(key)) {
            Py_DECREF(key);
            PyErr_SetString(PyExc_TypeError, "disabled must be a frozenset of bytes");
            break;
        }
        const char *name = PyBytes_AS_STRING(key); /* alive as long as the set */
        size_t len = (size_t)PyBytes_GET_SIZE(key);
        Py_DECREF(key);
        uint32_t hash = name_hash(name, len);
        size_t i = hash & (size - 1);
        while (slots[i].name != NULL) {
            i = (i + 1) & (size - 1);
        }
        slots[i] = (NameSlot){name, len, hash};
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) {
        PyMem_RawFree(slots);
        return NULL;
    }
    name_table_clear(table);
    table->set = Py_NewRef(set);
    table->slots = slots;
    table->mask = size - 1;
    table->used = ++name_table_clock;
    return table;
}

static int
name_table_has(const NameTable *table, const char *name, size_t len)
{
    uint32_t hash = name_hash(name, len);
    for (size_t i = hash & table->mask;; i = (i + 1) & table->mask) {
        const NameSlot *slot = &table->slots[i];
        if (slot->name == NULL) {
            return 0;
        }
        if (slot->hash == hash && slot->len == len && memcmp(slot->name, name, len) == 0) {
            return 1;
        }
    }
}

/* Whether the document is a dispatch of a disabled event (its sequence in *seq). */
static int
peek(const NameTable *names, const unsigned char *doc, size_t n, long long *seq)
{
    static const char head[] = "{\"t\":\"";
    static const char middle[] = "\",\"s\":";
    if (n < 6 || memcmp(doc, head, 6) != 0) {
        return 0;
    }
    const unsigned char *quote = memchr(doc + 6, '"', n - 6);
    if (quote == NULL) {
        return 0;
    }
    size_t pos = (size_t)(quote - doc);
    if (n - pos < 6 || memcmp(doc + pos, middle, 6) != 0) {
        return 0;
    }
    size_t digits = pos + 6, end = digits;
    long long value = 0;
    while (end < n && end - digits < MAX_SEQUENCE_DIGITS && doc[end] >= '0' && doc[end] <= '9') {
        value = value * 10 + (doc[end] - '0');
        end++;
    }
    if (end == digits || end >= n || doc[end] != ',') {
        return 0;
    }
    if (!name_table_has(names, (const char *)doc + 6, pos - 6)) {
        return 0;
    }
    *seq = value;
    return 1;
}

static int
buffer_part(ZlibStream *self, const char *data, size_t len)
{
    if (len > self->part_size - self->part_len) {
        size_t size = self->part_size ? self->part_size : 4096;
        while (size < self->part_len + len) {
            size *= 2;
        }
        unsigned char *bigger = PyMem_RawRealloc(self->part, size);
        if (bigger == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->part = bigger;
        self->part_size = size;
    }
    memcpy(self->part + self->part_len, data, len);
    self->part_len += len;
    return 0;
}

/* Take one message; *doc_len is set (-1 if the message is still incomplete). */
static int
take_message(ZlibStream *self, PyObject *data, Py_ssize_t *doc_len)
{
    const char *bytes = PyBytes_AS_STRING(data);
    size_t len = (size_t)PyBytes_GET_SIZE(data);
    int whole = len >= 4 && memcmp(bytes + len - 4, "\x00\x00\xff\xff", 4) == 0;
    size_t out_len;
    if (self->part_len == 0 && whole) {
        if (inflate_message(self, (const unsigned char *)bytes, len, &out_len) < 0) {
            return -1;
        }
    }
    else {
        if (buffer_part(self, bytes, len) < 0) {
            return -1;
        }
        if (!whole) {
            if (self->part_len > (size_t)self->max_size) {
                self->part_len = 0;
                violation(self, "compressed message exceeds the size limit", 1009);
                return -1;
            }
            *doc_len = -1;
            return 0;
        }
        size_t part_len = self->part_len;
        self->part_len = 0;
        if (inflate_message(self, self->part, part_len, &out_len) < 0) {
            return -1;
        }
    }
    *doc_len = (Py_ssize_t)out_len;
    return 0;
}

static void
release_scratch(void)
{
    if (scratch_size > SCRATCH_KEEP) {
        PyMem_RawFree(scratch);
        scratch = NULL;
        scratch_size = 0;
    }
}

/* (index, document, dropped, top), taking the reference to ``doc``. Not Py_BuildValue,
 * which would parse its format string once per document. */
static PyObject *
step(Py_ssize_t index, PyObject *doc, long long dropped, long long top)
{
    PyObject *at = PyLong_FromSsize_t(index);
    PyObject *count = PyLong_FromLongLong(dropped);
    PyObject *highest = PyLong_FromLongLong(top);
    PyObject *result =
        at && count && highest ? PyTuple_Pack(4, at, doc, count, highest) : NULL;
    Py_XDECREF(at);
    Py_XDECREF(count);
    Py_XDECREF(highest);
    Py_DECREF(doc);
    return result;
}

static PyObject *
next_document(ZlibStream *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "next_document takes 3 arguments");
        return NULL;
    }
    if (self->held) {
        self->held = 0;
        raise_failure(self);
        return NULL;
    }
    PyObject *messages = args[0];
    if (!PyList_CheckExact(messages)) {
        PyErr_SetString(PyExc_TypeError, "next_document: messages must be a list");
        return NULL;
    }
    Py_ssize_t index = PyLong_AsSsize_t(args[1]);
    if (index == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (index < 0) {
        PyErr_SetString(PyExc_ValueError, "next_document: a negative index");
        return NULL;
    }
    PyObject *disabled = args[2];
    if (!PyFrozenSet_CheckExact(disabled)) {
        PyErr_SetString(PyExc_TypeError, "disabled must be a frozenset of bytes");
        return NULL;
    }
    NameTable *names = NULL;
    if (PySet_GET_SIZE(disabled) > 0 && (names = name_table(disabled)) == NULL) {
        return NULL;
    }
    long long dropped = 0, top = -1;
    PyObject *doc = NULL;
    while (index < PyList_GET_SIZE(messages)) {
        PyObject *message = PyList_GET_ITEM(messages, index);
        if (!PyTuple_CheckExact(message) || PyTuple_GET_SIZE(message) != 2 ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(message, 1))) {
            PyErr_SetString(PyExc_TypeError, "next_document: messages must be (opcode, bytes)");
            goto error;
        }
        long opcode = PyLong_AsLong(PyTuple_GET_ITEM(message, 0));
        if (opcode == -1 && PyErr_Occurred()) {
            goto error;
        }
        if (opcode != TEXT && opcode != BINARY) {
            break;
        }
        Py_ssize_t doc_len;
        if (take_message(self, PyTuple_GET_ITEM(message, 1), &doc_len) < 0) {
            goto error;
        }
        index++;
        if (doc_len < 0) {
            continue;
        }
        long long seq;
        if (names != NULL && peek(names, scratch, (size_t)doc_len, &seq)) {
            dropped++;
            if (seq > top) {
                top = seq;
            }
            continue;
        }
        doc = PyBytes_FromStringAndSize((const char *)scratch, doc_len);
        if (doc == NULL) {
            goto error;
        }
        break;
    }
    release_scratch();
    if (doc == NULL) {
        doc = Py_NewRef(Py_None);
    }
    return step(index, doc, dropped, top);

error:
    release_scratch();
    if (dropped == 0 || !PyErr_ExceptionMatches(ProtocolViolation)) {
        return NULL;
    }
    PyErr_Clear();  /* ``failure`` holds its words and code: no exception object kept */
    self->held = 1;
    return step(index, Py_NewRef(Py_None), dropped, top);
}

static int
ZlibStream_init(ZlibStream *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_size", NULL};
    Py_ssize_t max_size;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n", keywords, &max_size)) {
        return -1;
    }
    if (max_size < 1) {
        PyErr_SetString(PyExc_ValueError, "max_size must be at least 1");
        return -1;
    }
    if (self->zs.state != NULL) {
        zng_inflateEnd(&self->zs);
    }
    memset(&self->zs, 0, sizeof self->zs);
    if (zng_inflateInit2(&self->zs, -MAX_WBITS) != Z_OK) {
        memset(&self->zs, 0, sizeof self->zs);
        PyErr_NoMemory();
        return -1;
    }
    self->started = 0;
    self->part_len = 0;
    self->max_size = max_size;
    self->held = 0;
    return 0;
}

static void
ZlibStream_dealloc(ZlibStream *self)
{
    if (self->zs.state != NULL) {
        zng_inflateEnd(&self->zs);
    }
    PyMem_RawFree(self->part);
    Py_XDECREF(self->failure);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
ZlibStream_get_max_size(ZlibStream *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->max_size);
}

static PyMethodDef ZlibStream_methods[] = {
    {"next_document", (PyCFunction)(void (*)(void))next_document, METH_FASTCALL,
     "next_document(messages, index, disabled) -> (index, document, dropped, top)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ZlibStream_getset[] = {
    {"max_size", (getter)ZlibStream_get_max_size, NULL, "the largest inflated message", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ZlibStreamType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sharder._zlibstream.ZlibStream",
    .tp_doc = "ZlibStream(max_size): one connection's zlib-stream inflater with early discard.",
    .tp_basicsize = sizeof(ZlibStream),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ZlibStream_init,
    .tp_dealloc = (destructor)ZlibStream_dealloc,
    .tp_methods = ZlibStream_methods,
    .tp_getset = ZlibStream_getset,
};

static struct PyModuleDef zlibstream_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sharder._zlibstream",
    .m_doc = "The zlib-stream inflater with early discard, in C (see sharder/_codec.py).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__zlibstream(void)
{
    if (PyType_Ready(&ZlibStreamType) < 0) {
        return NULL;
    }
    PyObject *errors = PyImport_ImportModule("sharder.errors");
    if (errors == NULL) {
        return NULL;
    }
    ProtocolViolation = PyObject_GetAttrString(errors, "ProtocolViolation");
    Py_DECREF(errors);
    if (ProtocolViolation == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&zlibstream_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "ZlibStream", (PyObject *)&ZlibStreamType) < 0
        || PyModule_AddStringConstant(module, "INFLATE_LIBRARY", "zlib-ng " ZLIBNG_VERSION) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
