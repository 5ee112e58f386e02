/* The zlib-stream inflater with early discard, in C.
 *
 * ZlibStream(max_size) is sharder/_codec.py's ZlibStreamInflater (one
 * inflate stream per connection, the two-byte zlib header checked once, a
 * message split over websocket messages buffered until it ends with
 * 00 00 ff ff, errors in the same words but for corrupt deflate data) with
 * the loop that calls it moved in here too:
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
 * few comparisons.
 *
 * Inflating is libdeflate's (third_party/libdeflate, compiled in by setup.py),
 * patched to take a message of a stream flushed after each message: it
 * inflates a whole message in one call, matches reaching back into the
 * history of earlier messages kept just before it in the same buffer. So
 * the buffer is all a stream keeps between messages (the decode tables are
 * one set for the process: the GIL is held for the call, and a message's
 * blocks all end with it); it starts small and grows to 64 KiB, where the
 * last 32 KiB slide back to its start. About a quarter less time per gateway
 * message than zlib-ng, all of it in the decoding loop.
 *
 * A message is inflated whole or refused: one that ends as a message does
 * but leaves a deflate block open (a corrupt stream; Discord flushes after
 * every payload) is a protocol violation here, where zlib, and so the Python
 * inflater, returns what it has and goes on into the next message.
 *
 * ZlibStreamInflater.next_document is the same contract in Python; both must
 * agree on every stream so flushed, errors included, and the C one may only
 * refuse sooner on any other: tests/sharder/test_zlibstream.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include "libdeflate.h"

#define TEXT 1
#define BINARY 2
#define WINDOW 32768     /* the farthest a deflate match reaches back */
#define KEPT_SIZE (2 * WINDOW) /* a full window, then room: one slide per 32 KiB inflated */
#define MIN_ROOM 1024
#define MAX_SEQUENCE_DIGITS 18 /* the same bound as sharder/_peek.py's pattern */

static PyObject *ProtocolViolation; /* sharder.errors.ProtocolViolation */
/* The tables of the block being inflated. A message's blocks all end with it
 * (the sender flushes after each message), so one serves every stream. */
static struct libdeflate_decompressor *decompressor;

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
    unsigned char *buffer;   /* the stream's last WINDOW bytes (or more), then a message */
    size_t used, size;
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

static void
slide(ZlibStream *self)
{
    if (self->used > WINDOW) {
        memmove(self->buffer, self->buffer + self->used - WINDOW, WINDOW);
        self->used = WINDOW;
    }
}

static int
resize(ZlibStream *self, size_t target)
{
    unsigned char *resized = PyMem_RawRealloc(self->buffer, target);
    if (resized == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buffer = resized;
    self->size = target;
    return 0;
}

/* Make room for ``want`` bytes of output after the history: slide the history's
 * last WINDOW bytes to the start when the buffer is full, and grow it, doubling
 * while the history is shorter than that. */
static int
make_room(ZlibStream *self, size_t want)
{
    if (self->size - self->used >= want) {
        return 0;
    }
    slide(self);
    size_t target = self->used + want;
    if (self->used == WINDOW) {
        if (target < KEPT_SIZE) {
            target = KEPT_SIZE;
        }
    }
    else if (target < 2 * self->size) {
        target = 2 * self->size;
    }
    return self->size >= target ? 0 : resize(self, target);
}

/* After a message that needed more room than KEPT_SIZE, once its document is
 * copied or dropped: a quiet stream does not keep a big message's room. */
static void
settle(ZlibStream *self)
{
    if (self->size > KEPT_SIZE) {
        slide(self);
        unsigned char *smaller = PyMem_RawRealloc(self->buffer, KEPT_SIZE);
        if (smaller != NULL) { /* else it stays as it was */
            self->buffer = smaller;
            self->size = KEPT_SIZE;
        }
    }
}

/* Inflate one whole message to self->buffer[self->used:], returned in *out, *out_len. */
static int
inflate_message(ZlibStream *self, const unsigned char *data, size_t len,
                const unsigned char **out, size_t *out_len)
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
    /* Gateway JSON inflates to 2-5 times its size. Too little room costs a try
     * more with twice as much; all the room there is goes to every try. */
    size_t want = len < MIN_ROOM / 8 ? MIN_ROOM : len > SIZE_MAX / 8 ? SIZE_MAX : len * 8;
    for (;;) {
        if (make_room(self, want < limit ? want : limit) < 0) {
            return -1;
        }
        size_t room = self->size - self->used;
        if (room > limit) {
            room = limit;
        }
        unsigned char *start = self->buffer + self->used;
        int final_block;
        enum libdeflate_result result = libdeflate_deflate_decompress_flushed(
            decompressor, self->buffer, data, len, start, room, out_len, &final_block);
        if (result == LIBDEFLATE_SUCCESS) {
            if (final_block) {
                violation(self, "corrupt zlib stream: a final block ended it", 4000);
                return -1;
            }
            self->used += *out_len;
            *out = start;
            return 0;
        }
        if (result != LIBDEFLATE_INSUFFICIENT_SPACE) {
            violation(self, "corrupt zlib stream: invalid deflate data", 4000);
            return -1;
        }
        if (room >= limit) {
            violation(self, "inflated message exceeds the size limit", 1009);
            return -1;
        }
        want = room > SIZE_MAX / 2 ? SIZE_MAX : room * 2;
    }
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

/* Take one message: its document is *doc, *doc_len (*doc is NULL while incomplete). */
static int
take_message(ZlibStream *self, PyObject *data, const unsigned char **doc, size_t *doc_len)
{
    const char *bytes = PyBytes_AS_STRING(data);
    size_t len = (size_t)PyBytes_GET_SIZE(data);
    int whole = len >= 4 && memcmp(bytes + len - 4, "\x00\x00\xff\xff", 4) == 0;
    if (self->part_len == 0 && whole) {
        if (inflate_message(self, (const unsigned char *)bytes, len, doc, doc_len) < 0) {
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
            *doc = NULL;
            return 0;
        }
        size_t part_len = self->part_len;
        self->part_len = 0;
        if (inflate_message(self, self->part, part_len, doc, doc_len) < 0) {
            return -1;
        }
    }
    return 0;
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
        const unsigned char *inflated;
        size_t inflated_len;
        if (take_message(self, PyTuple_GET_ITEM(message, 1), &inflated, &inflated_len) < 0) {
            goto error;
        }
        index++;
        if (inflated == NULL) {
            continue;
        }
        long long seq;
        if (names != NULL && peek(names, inflated, inflated_len, &seq)) {
            dropped++;
            if (seq > top) {
                top = seq;
            }
            settle(self);
            continue;
        }
        doc = PyBytes_FromStringAndSize((const char *)inflated, (Py_ssize_t)inflated_len);
        settle(self);
        if (doc == NULL) {
            goto error;
        }
        break;
    }
    if (doc == NULL) {
        doc = Py_NewRef(Py_None);
    }
    return step(index, doc, dropped, top);

error:
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
    self->used = 0;
    self->started = 0;
    self->part_len = 0;
    self->max_size = max_size;
    self->held = 0;
    return 0;
}

static void
ZlibStream_dealloc(ZlibStream *self)
{
    PyMem_RawFree(self->buffer);
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
    decompressor = libdeflate_alloc_decompressor();
    if (decompressor == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject *module = PyModule_Create(&zlibstream_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "ZlibStream", (PyObject *)&ZlibStreamType) < 0
        || PyModule_AddStringConstant(module, "INFLATE_LIBRARY",
                                      "libdeflate " LIBDEFLATE_VERSION_STRING " + botrun.patch") < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
