// A CPU stand-in for libcuda, libnvrtc and libcublas, so that tiny's CUDA backend runs end to end where there is no GPU.
//
// It implements only what cudarc calls for tiny, with the documented semantics. Device memory is host memory;
// fresh allocations are filled with NaN bytes, as a real pool hands out stale data, and freed memory is
// poisoned the same way. Streams really queue their work, and nothing runs until the host waits for it:
// waiting on a stream or an event runs that stream's queue, and another stream's only as far as an event
// the first one waits on needs. So a missing event, a pinned buffer rewritten before its copy ran, or memory
// freed on one stream while another still reads it gives wrong numbers here, as it can on a GPU. Copies from
// pinned host memory read it when they run, copies from pageable memory when they are queued. Stream capture
// records a stream's work into a graph instead of queueing it, and a launch queues the recording again (see
// "graphs" below); what CUDA forbids during a capture (waiting for the capturing stream, pageable copies,
// events from outside, unsafe calls such as cuMemAlloc) fails here too and invalidates the capture. cuBLAS's
// column-major SGEMMs are plain loops. "PTX" from the fake NVRTC is the CUDA source itself: loading it as a
// module compiles it with g++ against a small shim in which each block's threads are fibers that meet at
// __syncthreads, so launch shapes, block reductions and kernel arguments are exercised as on a GPU. Speed,
// true concurrency and the real libraries stay untested.

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <functional>
#include <mutex>
#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum {
    OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_IMAGE = 200, INVALID_HANDLE = 400, ILLEGAL_STATE = 401,
    NOT_FOUND = 500, NOT_READY = 600, CAPTURE_UNSUPPORTED = 900, CAPTURE_INVALIDATED = 901, CAPTURE_ISOLATION = 905,
    CAPTURE_WRONG_THREAD = 908
};

// One lock for everything: queued work runs on whichever thread waits for it, and the kernels' shim keeps its
// thread indices in globals.
static std::recursive_mutex big_lock;
#define LOCKED std::lock_guard<std::recursive_mutex> guard_(big_lock)

// With TINY_FAKE_CUDA_STATS=1, the process prints at exit how many of each kind of GPU work it queued:
// launches per kernel, SGEMMs, copies and fills (a captured graph's work counts once, when it is recorded, and
// then each of its launches as a graph launch). Counting them finds needless launches without a GPU.
struct Stats {
    std::map<std::string, std::pair<unsigned long long, unsigned long long>> counts;  // name -> (calls, bytes)
    ~Stats() {
        if (!getenv("TINY_FAKE_CUDA_STATS")) return;
        fprintf(stderr, "fake CUDA: queued work (calls, bytes moved)\n");
        for (auto& c : counts) fprintf(stderr, "  %-32s %10llu %14llu\n", c.first.c_str(), c.second.first, c.second.second);
    }
};
static Stats stats;
static void count(const std::string& what, size_t bytes = 0) {
    auto& c = stats.counts[what];
    c.first++;
    c.second += bytes;
}

static int ctx_token;
static thread_local void* current_ctx = nullptr;

// A stream-ordered memory pool: the device's default one, or one made with cuMemPoolCreate. A created pool
// keeps the blocks freed into it mapped (poisoned, not given back) until it is destroyed and nothing drawn
// from it is still allocated, as a pool whose release threshold is never reached does.
struct Pool {
    size_t used = 0, outstanding = 0;
    bool destroyed = false;
    std::vector<void*> kept;
};
static Pool default_pool;

// Live device allocations by address, with their sizes and pools, and pinned host buffers with their sizes.
static std::map<uintptr_t, std::pair<size_t, Pool*>> device_allocs;
static std::map<uintptr_t, size_t> pinned;

// The fake device's memory, and what its live allocations hold.
static const size_t DEVICE_BYTES = (size_t)8 << 30;
static size_t device_used = 0;

// The memory a device allocation of `n` bytes from `pool` gets: aligned, and NaN bytes until written. Null
// when it does not fit in what the device has left.
static void* device_bytes(size_t n, Pool* pool = &default_pool) {
    if (n > DEVICE_BYTES - device_used) return nullptr;
    void* p = aligned_alloc(256, ((n + 255) / 256) * 256 + 256);
    if (p) {
        memset(p, 0xff, n);
        device_allocs[(uintptr_t)p] = {n, pool};
        device_used += n;
        pool->used += n;
        pool->outstanding++;
    }
    return p;
}

// Freed memory is poisoned and kept until no queue holds work that could touch it, so that a kernel still
// queued on another stream reads NaN from it instead of another allocation's data.
static std::vector<void*> quarantine;

static void device_free(void* p) {
    auto at = device_allocs.find((uintptr_t)p);
    if (at == device_allocs.end()) return;  // freed twice: the second free was refused when it was made
    Pool* pool = at->second.second;
    memset(p, 0xff, at->second.first);
    device_used -= at->second.first;
    pool->used -= at->second.first;
    pool->outstanding--;
    device_allocs.erase(at);
    if (pool == &default_pool) {
        quarantine.push_back(p);
        return;
    }
    pool->kept.push_back(p);
    if (pool->destroyed && pool->outstanding == 0) {
        quarantine.insert(quarantine.end(), pool->kept.begin(), pool->kept.end());
        delete pool;
    }
}

// Whether [p, p + n) lies in a pinned host buffer.
static bool is_pinned(const void* p, size_t n) {
    auto at = pinned.upper_bound((uintptr_t)p);
    if (at == pinned.begin()) return false;
    --at;
    return (uintptr_t)p + n <= at->first + at->second;
}

// ---- streams and events: queues that run when the host waits ----
struct Event;
struct Capture;
struct Item {
    Event* wait_for;  // run only once this event's record `wait_id` has run (record 0: at once)
    uint64_t wait_id;
    std::function<void()> run;
    bool inert;  // touches no freed memory: a wait, an event's record, or a free of a live block
};
struct Stream {
    std::deque<Item> queue;
    bool blocking;  // a stream created without CU_STREAM_NON_BLOCKING syncs with the legacy default stream
    bool computes = false;  // has run kernels or SGEMMs (see copy_first)
    Capture* capture = nullptr;  // the capture recording this stream's work, if any
};
// An event's records are numbered; a wait is for one record, which is done once it has left `pending`.
struct Event {
    bool timing = true;  // created without CU_EVENT_DISABLE_TIMING: cuEventElapsedTime may read it
    double ran_ms = -1;  // when its last record ran, in host milliseconds (-1: never)
    uint64_t recorded = 0;
    std::map<uint64_t, Stream*> pending;  // the records not yet run, with the stream each is queued on
    uint64_t captured = 0;  // the capture its last record was made in (0: none)
    bool done(uint64_t id) const { return id == 0 || !pending.count(id); }
};
static Event no_event;
static Stream legacy{{}, false};
static std::vector<Stream*> streams{&legacy};

// ---- graphs: a capture records what its stream is given; a launch queues the recording again ----
// A graph's memory: what cuMemAllocAsync on a capturing stream makes. Its address is fixed at capture; each
// launch allocates it again (NaN bytes), and a launch while the last launch's allocation is still held fails
// unless the graph was instantiated with auto-free-on-launch, as CUDA's graph memory nodes do.
struct Graph;
struct GraphMem {
    void* p;
    size_t n;
    Graph* graph;
    bool freed_in_graph = false, outstanding = false, graph_gone = false;
};
struct Graph {
    std::shared_ptr<std::vector<std::function<void()>>> nodes = std::make_shared<std::vector<std::function<void()>>>();
    std::vector<GraphMem*> allocs;
};
struct Capture {
    uint64_t id;
    Graph* graph;
    int mode;  // CU_STREAM_CAPTURE_MODE_GLOBAL 0, THREAD_LOCAL 1, RELAXED 2
    std::thread::id thread;
    bool invalid = false;
};
struct Exec {
    Graph* graph;
    bool auto_free;
};
static std::vector<Capture*> captures;  // those in progress
static std::map<uintptr_t, GraphMem*> graph_mem;
static uint64_t next_capture = 0;
// This thread's capture mode (cuThreadExchangeStreamCaptureMode), GLOBAL by default.
static thread_local int thread_mode = 0;

// A call CUDA does not allow during capture `c`: the capture is invalidated, and the call fails with `code`.
static CUresult fail_capture(Capture* c, CUresult code) {
    c->invalid = true;
    return code;
}

// The potentially unsafe calls (synchronous allocation and frees, pinning, device-wide synchronisation) are
// prohibited on a thread whose capture is not relaxed, and, unless this thread relaxed its mode, while any
// thread captures in global mode.
static CUresult unsafe_call() {
    if (thread_mode == 2) return OK;
    std::thread::id me = std::this_thread::get_id();
    for (Capture* c : captures) {
        bool mine = c->thread == me && c->mode != 2;
        bool global = thread_mode == 0 && c->thread != me && c->mode == 0;
        if (mine || global) return fail_capture(c, CAPTURE_UNSUPPORTED);
    }
    return OK;
}

static Stream* stream_of(void* h) {
    // 0 is the legacy default stream; 1 (CU_STREAM_LEGACY) and 2 (CU_STREAM_PER_THREAD) are treated as it.
    return (uintptr_t)h <= 2 ? &legacy : (Stream*)h;
}

static void run_until(Stream* s, const std::function<bool()>& done);

// With TINY_FAKE_CUDA_ORDER=copy-first, streams that only copy (or free) run their work as soon as nothing
// holds it back, while the legacy default stream and every stream that has run a kernel or an SGEMM still
// wait for the host: a copy stream then races ahead of the kernels, which shows a buffer overwritten before
// the kernels read it. The default order (every stream as late as possible) shows a buffer read before it
// was written.
static bool copy_first() {
    static int on = -1;
    if (on < 0) on = getenv("TINY_FAKE_CUDA_ORDER") && !strcmp(getenv("TINY_FAKE_CUDA_ORDER"), "copy-first");
    return on;
}

static void advance_others();

// Runs whatever `e`'s record number `id` waits behind.
static void reach(Event* e, uint64_t id) {
    if (!e->done(id)) run_until(e->pending[id], [&] { return e->done(id); });
}

// Runs `s`'s queue in order until `done`, running other streams only as far as the events it waits on.
static void run_until(Stream* s, const std::function<bool()>& done) {
    while (!done() && !s->queue.empty()) {
        Item& head = s->queue.front();
        if (!head.wait_for->done(head.wait_id)) {
            reach(head.wait_for, head.wait_id);
            continue;
        }
        std::function<void()> run = std::move(head.run);
        s->queue.pop_front();
        if (run) run();
        if (copy_first()) advance_others();
    }
}

// Runs every stream but the legacy one as far as it can go without waiting.
static void advance_others() {
    static bool busy = false;
    if (busy) return;
    busy = true;
    for (bool progress = true; progress;) {
        progress = false;
        for (Stream* s : streams) {
            if (s == &legacy || s->computes) continue;
            while (!s->queue.empty()) {
                Item& head = s->queue.front();
                if (!head.wait_for->done(head.wait_id)) break;
                std::function<void()> run = std::move(head.run);
                s->queue.pop_front();
                if (run) run();
                progress = true;
            }
        }
    }
    busy = false;
}

// Frees the quarantined memory once no queue holds work that could still touch it.
static void release_quarantine() {
    for (Stream* s : streams)
        for (const Item& i : s->queue)
            if (!i.inert) return;
    for (void* p : quarantine) free(p);
    quarantine.clear();
}

static void drain(Stream* s) {
    run_until(s, [] { return false; });
    release_quarantine();
}

static void drain_all() {
    for (bool more = true; more;) {
        more = false;
        for (Stream* s : streams) {
            if (!s->queue.empty()) { drain(s); more = true; }
        }
    }
}

static Event* record_on(Event* e, Stream* s);

// Host time in milliseconds: when an event's record runs here, the "GPU" time between two events.
static double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Queues `run` on `s` (after the legacy stream's work for a blocking stream, and after every blocking
// stream's work for the legacy one, as CUDA's implicit synchronisation does). On a capturing stream it is
// recorded into the capture's graph instead (and dropped once the capture is invalid).
static void enqueue(Stream* s, std::function<void()> run, bool inert = false) {
    if (s->capture) {
        if (!s->capture->invalid) s->capture->graph->nodes->push_back(std::move(run));
        return;
    }
    if (s == &legacy) {
        for (Stream* b : streams)
            if (b != &legacy && b->blocking && !b->queue.empty()) {
                Event* e = record_on(new Event, b);
                legacy.queue.push_back({e, e->recorded, nullptr, true});
            }
    } else if (s->blocking && !legacy.queue.empty()) {
        Event* e = record_on(new Event, &legacy);
        s->queue.push_back({e, e->recorded, nullptr, true});
    }
    s->queue.push_back({&no_event, 0, std::move(run), inert});
    if (copy_first()) advance_others();
}

// Records `e` on `s`. In a capture the record marks the event as the capture's; it queues nothing.
static Event* record_on(Event* e, Stream* s) {
    if (s->capture) {
        e->captured = s->capture->id;
        return e;
    }
    e->captured = 0;
    uint64_t id = ++e->recorded;
    e->pending[id] = s;
    s->queue.push_back({&no_event, 0, [e, id] {
        e->pending.erase(id);
        e->ran_ms = now_ms();
    }, true});
    return e;
}

extern "C" {

// ---- driver: setup and devices ----
CUresult cuInit(unsigned) { return OK; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return OK; }
CUresult cuDeviceGet(int* dev, int ordinal) { if (ordinal != 0) return INVALID_VALUE; *dev = 0; return OK; }
CUresult cuDeviceGetName(char* name, int len, int) { snprintf(name, len, "tiny fake CUDA device (CPU)"); return OK; }
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = (size_t)8 << 30; return OK; }
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
        case 1: *v = 1024; break;                 // max threads per block
        case 16: *v = 4; break;                   // multiprocessors
        case 75: *v = 9; break;                   // compute capability major
        case 76: *v = 0; break;                   // compute capability minor
        case 115: *v = 1; break;                  // memory pools supported
        default: *v = 0;
    }
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &ctx_token; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return OK; }
CUresult cuDevicePrimaryCtxRelease(int) { return OK; }
CUresult cuCtxSetCurrent(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current_ctx; return OK; }
CUresult cuCtxPushCurrent_v2(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxPopCurrent_v2(void** ctx) { if (ctx) *ctx = current_ctx; return OK; }
CUresult cuCtxSynchronize() {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    drain_all();
    return OK;
}
CUresult cuCtxGetDevice(int* dev) { *dev = 0; return OK; }
CUresult cuMemGetInfo_v2(size_t* free_b, size_t* total);
CUresult cuGetErrorString(CUresult, const char** s) { *s = "fake CUDA error"; return OK; }
CUresult cuGetErrorName(CUresult, const char** s) { *s = "CUDA_ERROR_FAKE"; return OK; }

// ---- streams and events ----
CUresult cuStreamCreate(void** s, unsigned flags) {
    LOCKED;
    Stream* st = new Stream{{}, (flags & 1) == 0};
    streams.push_back(st);
    *s = st;
    return OK;
}
CUresult cuStreamCreateWithPriority(void** s, unsigned flags, int) { return cuStreamCreate(s, flags); }
// Streams and events are kept after they are destroyed: queued work may still refer to them.
CUresult cuStreamDestroy_v2(void* s) {
    LOCKED;
    if (stream_of(s)->capture) return ILLEGAL_STATE;
    drain(stream_of(s));
    return OK;
}
// Waiting for (or asking about) a stream that captures is not allowed: nothing of its capture runs.
CUresult cuStreamSynchronize(void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    if (st->capture) return fail_capture(st->capture, CAPTURE_UNSUPPORTED);
    drain(st);
    return OK;
}
CUresult cuStreamQuery(void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    if (st->capture) return fail_capture(st->capture, CAPTURE_UNSUPPORTED);
    return st->queue.empty() ? OK : NOT_READY;
}
// A capturing stream may wait only for its own capture's events (one stream: ordered already). An event from
// outside the capture, or a stream outside waiting for a capture's event (which would join the capture, a
// cross-stream capture this fake does not model), fails and invalidates the capture.
CUresult cuStreamWaitEvent(void* s, void* e, unsigned) {
    LOCKED;
    Stream* st = stream_of(s);
    Event* ev = (Event*)e;
    if (st->capture) return ev->captured == st->capture->id ? OK : fail_capture(st->capture, CAPTURE_ISOLATION);
    if (ev->captured) {
        for (Capture* c : captures)
            if (c->id == ev->captured) return fail_capture(c, CAPTURE_ISOLATION);
        return OK;  // recorded in a capture that has ended: there is nothing to wait for
    }
    st->queue.push_back({ev, ev->recorded, nullptr, true});
    if (copy_first()) advance_others();
    return OK;
}
// Flag 2 is CU_EVENT_DISABLE_TIMING (cudarc's default).
CUresult cuEventCreate(void** e, unsigned flags) {
    Event* ev = new Event;
    ev->timing = (flags & 2) == 0;
    *e = ev;
    return OK;
}
CUresult cuEventDestroy_v2(void*) { return OK; }
CUresult cuEventRecord(void* e, void* s) {
    LOCKED;
    record_on((Event*)e, stream_of(s));
    if (copy_first()) advance_others();
    return OK;
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
// A captured event has not happened: waiting for it or asking about it fails and invalidates its capture.
static CUresult captured_event(Event* ev) {
    for (Capture* c : captures)
        if (c->id == ev->captured) return fail_capture(c, CAPTURE_UNSUPPORTED);
    return OK;
}
CUresult cuEventSynchronize(void* e) {
    LOCKED;
    Event* ev = (Event*)e;
    if (ev->captured) return captured_event(ev);
    reach(ev, ev->recorded);
    return OK;
}
CUresult cuEventQuery(void* e) {
    LOCKED;
    Event* ev = (Event*)e;
    if (ev->captured) return captured_event(ev);
    return ev->done(ev->recorded) ? OK : NOT_READY;
}
// The host time between the runs of the two events' last records: both must time, have been recorded outside a
// capture, and have run (else NOT_READY, as CUDA says of an event whose work is still queued).
CUresult cuEventElapsedTime(float* ms, void* start, void* end) {
    LOCKED;
    Event* a = (Event*)start;
    Event* b = (Event*)end;
    if (!a->timing || !b->timing || a->captured || b->captured) return INVALID_HANDLE;
    if (!a->done(a->recorded) || !b->done(b->recorded)) return NOT_READY;
    if (a->ran_ms < 0 || b->ran_ms < 0) return INVALID_HANDLE;
    *ms = (float)(b->ran_ms - a->ran_ms);
    return OK;
}
CUresult cuEventElapsedTime_v2(float* ms, void* start, void* end) { return cuEventElapsedTime(ms, start, end); }

// ---- memory ----
static CUresult alloc_from(Pool* pool, CUdeviceptr* p, size_t n) {
    count("alloc", n);
    void* m = device_bytes(n, pool);
    if (!m) return OUT_OF_MEMORY;
    *p = (CUdeviceptr)m;
    return OK;
}
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    return alloc_from(&default_pool, p, n);
}
// On a capturing stream: graph memory, allocated by every launch of the graph (see GraphMem).
static CUresult graph_alloc(Capture* c, CUdeviceptr* p, size_t n) {
    count("alloc (graph memory)", n);
    void* m = aligned_alloc(256, ((n + 255) / 256) * 256 + 256);
    if (!m) return OUT_OF_MEMORY;
    memset(m, 0xff, n);
    GraphMem* g = new GraphMem{m, n, c->graph};
    c->graph->allocs.push_back(g);
    graph_mem[(uintptr_t)m] = g;
    if (!c->invalid) c->graph->nodes->push_back([g] { memset(g->p, 0xff, g->n); });
    *p = (CUdeviceptr)m;
    return OK;
}
// Available at once: the memory is only handed out, and nothing else holds it.
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    return st->capture ? graph_alloc(st->capture, p, n) : alloc_from(&default_pool, p, n);
}
CUresult cuMemAllocFromPoolAsync(CUdeviceptr* p, size_t n, void* pool, void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    return st->capture ? graph_alloc(st->capture, p, n) : alloc_from((Pool*)pool, p, n);
}
CUresult cuMemFree_v2(CUdeviceptr p) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    if (!device_allocs.count((uintptr_t)p)) return INVALID_VALUE;
    drain_all();
    device_free((void*)p);
    return OK;
}
// On a capturing stream only the capture's own graph memory may be freed (a free node); outside a capture,
// graph memory may be freed once a launch has allocated it.
// With TINY_FAKE_CUDA_FAIL_FREE_IN_CAPTURE=1 a free on a stream that does not capture fails while another
// stream captures (the memory stays allocated): cudarc's drops store such an error for their context to report
// later, which is how a capture's end meets an error that is not its own.
CUresult cuMemFreeAsync(CUdeviceptr p, void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    static const bool fail_in_capture = getenv("TINY_FAKE_CUDA_FAIL_FREE_IN_CAPTURE") != nullptr;
    if (fail_in_capture && !st->capture && !captures.empty()) return INVALID_VALUE;
    auto g = graph_mem.find((uintptr_t)p);
    if (st->capture) {
        if (g == graph_mem.end() || g->second->graph_gone || g->second->graph != st->capture->graph ||
            g->second->freed_in_graph)
            return fail_capture(st->capture, INVALID_VALUE);
        GraphMem* m = g->second;
        m->freed_in_graph = true;
        enqueue(st, [m] { memset(m->p, 0xff, m->n); });
        return OK;
    }
    if (g != graph_mem.end()) {
        GraphMem* m = g->second;
        if (!m->outstanding) return INVALID_VALUE;  // the graph has not run, or the memory was freed already
        m->outstanding = false;
        bool gone = m->graph_gone;  // else the graph's destruction gives the memory back
        if (gone) graph_mem.erase(g);
        enqueue(st, [m, gone] {
            memset(m->p, 0xff, m->n);
            if (gone) quarantine.push_back(m->p);
        });
        return OK;
    }
    if (!device_allocs.count((uintptr_t)p)) return INVALID_VALUE;  // not allocated, or freed already
    enqueue(st, [p] { device_free((void*)p); }, true);
    return OK;
}
CUresult cuMemHostAlloc(void** p, size_t n, unsigned) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    *p = aligned_alloc(256, ((n + 255) / 256) * 256 + 256);
    if (!*p) return OUT_OF_MEMORY;
    pinned[(uintptr_t)*p] = n;
    return OK;
}
CUresult cuMemAllocHost_v2(void** p, size_t n) { return cuMemHostAlloc(p, n, 0); }
CUresult cuMemFreeHost(void* p) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    drain_all();
    pinned.erase((uintptr_t)p);
    free(p);
    return OK;
}
CUresult cuMemHostGetFlags(unsigned* f, void*) { *f = 0; return OK; }
CUresult cuMemsetD8Async(CUdeviceptr p, unsigned char v, size_t n, void* s) {
    LOCKED;
    count("memset", n);
    enqueue(stream_of(s), [=] { memset((void*)p, v, n); });
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    cuMemsetD8Async(p, v, n, nullptr);
    return cuCtxSynchronize();
}
CUresult cuMemsetD32Async(CUdeviceptr p, unsigned v, size_t n, void* s) {
    LOCKED;
    enqueue(stream_of(s), [=] { for (size_t i = 0; i < n; i++) ((unsigned*)p)[i] = v; });
    return OK;
}
// From pinned memory the copy reads the host buffer when it runs (each launch of a graph that recorded it, too);
// from pageable memory, when it is queued, which a capture does not allow.
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* src, size_t n, void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    if (st->capture && !is_pinned(src, n)) return fail_capture(st->capture, CAPTURE_UNSUPPORTED);
    count(is_pinned(src, n) ? "copy host(pinned)->device" : "copy host(pageable)->device", n);
    if (is_pinned(src, n)) {
        enqueue(stream_of(s), [=] { memcpy((void*)d, src, n); });
    } else {
        auto copy = std::make_shared<std::vector<char>>((const char*)src, (const char*)src + n);
        enqueue(stream_of(s), [=] { memcpy((void*)d, copy->data(), n); });
    }
    return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* src, size_t n) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    cuMemcpyHtoDAsync_v2(d, src, n, nullptr);
    return cuCtxSynchronize();
}
// Into pageable memory the call returns only once the copy has run, as CUDA documents.
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    LOCKED;
    Stream* st = stream_of(s);
    if (st->capture && !is_pinned(dst, n)) return fail_capture(st->capture, CAPTURE_UNSUPPORTED);
    count("copy device->host", n);
    auto copied = std::make_shared<bool>(false);
    enqueue(stream_of(s), [=] { memcpy(dst, (const void*)src, n); *copied = true; });
    if (!is_pinned(dst, n)) run_until(stream_of(s), [&] { return *copied; });
    return OK;
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    cuMemcpyDtoHAsync_v2(dst, src, n, nullptr);
    return cuCtxSynchronize();
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr src, size_t n, void* s) {
    LOCKED;
    count("copy device->device", n);
    enqueue(stream_of(s), [=] { memmove((void*)d, (const void*)src, n); });
    return OK;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr src, size_t n) {
    LOCKED;
    if (CUresult r = unsafe_call()) return r;
    cuMemcpyDtoDAsync_v2(d, src, n, nullptr);
    return cuCtxSynchronize();
}
// The fake device's memory is 8 GiB, less what its live allocations hold.
CUresult cuMemGetInfo_v2(size_t* free_b, size_t* total) {
    LOCKED;
    size_t used = 0;
    for (auto& a : device_allocs) used += a.second.first;
    *total = (size_t)8 << 30;
    *free_b = *total - std::min(used, *total);
    return OK;
}
CUresult cuDeviceGetDefaultMemPool(void** pool, int) { *pool = &default_pool; return OK; }
CUresult cuMemPoolCreate(void** pool, const void*) {
    LOCKED;
    *pool = new Pool;
    return OK;
}
// A destroyed pool goes once nothing drawn from it is allocated any more.
CUresult cuMemPoolDestroy(void* p) {
    LOCKED;
    Pool* pool = (Pool*)p;
    if (pool == &default_pool || pool->destroyed) return INVALID_VALUE;
    pool->destroyed = true;
    if (pool->outstanding == 0) {
        quarantine.insert(quarantine.end(), pool->kept.begin(), pool->kept.end());
        delete pool;
    }
    return OK;
}
CUresult cuMemPoolSetAttribute(void*, int, void*) { return OK; }
// A pool's reserved and used memory (attributes 5 to 8) are its live allocations: the fake keeps no reserve.
CUresult cuMemPoolGetAttribute(void* pool, int attr, void* value) {
    LOCKED;
    if (attr < 5 || attr > 8) return INVALID_VALUE;
    *(unsigned long long*)value = ((Pool*)pool)->used;
    return OK;
}
CUresult cuMemPoolTrimTo(void*, size_t) { return OK; }

// ---- stream capture and graphs ----
CUresult cuThreadExchangeStreamCaptureMode(int* mode) {
    std::swap(thread_mode, *mode);
    return OK;
}
// The legacy stream cannot be captured; nor can a stream twice at once.
CUresult cuStreamBeginCapture_v2(void* s, int mode) {
    LOCKED;
    Stream* st = stream_of(s);
    if (st == &legacy) return CAPTURE_UNSUPPORTED;
    if (st->capture) return ILLEGAL_STATE;
    st->capture = new Capture{++next_capture, new Graph, mode, std::this_thread::get_id()};
    captures.push_back(st->capture);
    return OK;
}
CUresult cuStreamBeginCapture(void* s) { return cuStreamBeginCapture_v2(s, 0); }
static void destroy_graph(Graph* g);
// An invalidated capture ends with CUDA_ERROR_STREAM_CAPTURE_INVALIDATED and no graph.
CUresult cuStreamEndCapture(void* s, void** graph) {
    LOCKED;
    Stream* st = stream_of(s);
    Capture* c = st->capture;
    if (!c) return ILLEGAL_STATE;
    if (c->mode != 2 && c->thread != std::this_thread::get_id()) return fail_capture(c, CAPTURE_WRONG_THREAD);
    st->capture = nullptr;
    captures.erase(std::find(captures.begin(), captures.end(), c));
    bool invalid = c->invalid;
    Graph* g = c->graph;
    delete c;
    if (invalid) {
        destroy_graph(g);
        *graph = nullptr;
        return CAPTURE_INVALIDATED;
    }
    *graph = g;
    return OK;
}
CUresult cuStreamIsCapturing(void* s, int* status) {
    LOCKED;
    Capture* c = stream_of(s)->capture;
    *status = !c ? 0 : c->invalid ? 2 : 1;  // NONE, ACTIVE, INVALIDATED
    return OK;
}
CUresult cuStreamGetCaptureInfo(void* s, int* status, unsigned long long* id) {
    LOCKED;
    Capture* c = stream_of(s)->capture;
    *status = !c ? 0 : c->invalid ? 2 : 1;
    if (id && c) *id = c->id;
    return OK;
}
// Flag 1 is CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH.
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
    LOCKED;
    if (!graph) return INVALID_VALUE;
    *exec = new Exec{(Graph*)graph, (flags & 1) != 0};
    return OK;
}
// A launch queues the whole recording as one piece of work: nothing else runs in the middle of a replay.
CUresult cuGraphLaunch(void* exec, void* s) {
    LOCKED;
    Exec* x = (Exec*)exec;
    Stream* st = stream_of(s);
    if (st->capture) return fail_capture(st->capture, CAPTURE_UNSUPPORTED);  // graphs in graphs: not modelled
    for (GraphMem* m : x->graph->allocs) {
        if (m->freed_in_graph) continue;
        if (m->outstanding && !x->auto_free) return INVALID_VALUE;
        m->outstanding = true;
    }
    count("graph launch");
    auto nodes = x->graph->nodes;
    enqueue(st, [nodes] {
        for (auto& node : *nodes) node();
    });
    st->computes = true;
    return OK;
}
CUresult cuGraphUpload(void*, void*) { return OK; }
CUresult cuGraphExecDestroy(void* exec) {
    LOCKED;
    delete (Exec*)exec;
    return OK;
}
// Queued launches keep the recording alive. Graph memory still allocated by the last launch stays until it is
// freed; the rest goes once no queue can touch it.
static void destroy_graph(Graph* g) {
    for (GraphMem* m : g->allocs) {
        m->graph_gone = true;
        if (m->outstanding) continue;
        graph_mem.erase((uintptr_t)m->p);
        quarantine.push_back(m->p);
    }
    delete g;
}
CUresult cuGraphDestroy(void* graph) {
    LOCKED;
    destroy_graph((Graph*)graph);
    return OK;
}

// ---- NVRTC: the "PTX" (or "CUBIN") is the source, compiled when it is loaded as a module ----
static const char PTX_TAG[] = "// tiny fake PTX\n";
struct Program { std::string ptx; };
int nvrtcVersion(int* major, int* minor) { *major = 13; *minor = 0; return 0; }
int nvrtcCreateProgram(void** prog, const char* src, const char*, int, const char* const*, const char* const*) {
    *prog = new Program{std::string(PTX_TAG) + src};
    return 0;
}
int nvrtcCompileProgram(void*, int, const char* const*) { return 0; }
int nvrtcGetPTXSize(void* prog, size_t* n) { *n = ((Program*)prog)->ptx.size() + 1; return 0; }
int nvrtcGetPTX(void* prog, char* out) { Program* p = (Program*)prog; memcpy(out, p->ptx.c_str(), p->ptx.size() + 1); return 0; }
// TINY_FAKE_CUDA_NO_CUBIN=1 makes CUBINs unavailable (as for an architecture NVRTC does not know), so that
// the backend's PTX fallback runs.
int nvrtcGetCUBINSize(void* prog, size_t* n) {
    if (getenv("TINY_FAKE_CUDA_NO_CUBIN")) return 3;  // NVRTC_ERROR_INVALID_INPUT
    return nvrtcGetPTXSize(prog, n);
}
int nvrtcGetCUBIN(void* prog, char* out) { return nvrtcGetPTX(prog, out); }
int nvrtcGetProgramLogSize(void*, size_t* n) { *n = 1; return 0; }
int nvrtcGetProgramLog(void*, char* out) { out[0] = 0; return 0; }
int nvrtcDestroyProgram(void** prog) { delete (Program*)*prog; *prog = nullptr; return 0; }
const char* nvrtcGetErrorString(int) { return "fake NVRTC error"; }

}  // extern "C"

// ---- modules: g++ builds the kernels, with a shim for the CUDA built-ins and a trampoline per kernel ----
static const char SHIM[] = R"(
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <type_traits>
#include <utility>
struct EmuDim { unsigned x, y, z; };
static EmuDim threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
static inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, sizeof f); return f; }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, sizeof u); return u; }
// A block's threads are fibers: each runs until __syncthreads or its end, then the next one runs. When a
// block's first thread ends without reaching a barrier, its other threads run as plain calls, which is faster.
// Fibers switch with _setjmp/_longjmp; a new one starts on its own stack (with a guard page below it) through
// a few lines of assembly.
#include <setjmp.h>
#include <stdio.h>
#include <sys/mman.h>
static jmp_buf emu_main_jb, *emu_jb; static char* emu_stacks; static int *emu_done, *emu_started; static unsigned emu_cur, emu_cap;
static bool emu_fibers, emu_synced;
static void (*emu_fn)(void**); static void** emu_args;
static const size_t EMU_STACK = 256 << 10, EMU_GUARD = 4096;
static void emu_entry() { emu_fn(emu_args); emu_done[emu_cur] = 1; _longjmp(emu_main_jb, 1); }
static void __syncthreads() {
    if (!emu_fibers) { fprintf(stderr, "fake CUDA: a block's first thread passed no __syncthreads that another reached\n"); abort(); }
    emu_synced = true;
    // A compiler barrier: other fibers write the block's __shared__ arrays while this one is away.
    asm volatile("" ::: "memory");
    if (!_setjmp(emu_jb[emu_cur])) _longjmp(emu_main_jb, 1);
    asm volatile("" ::: "memory");
}
#if !defined(__x86_64__)
#error "the fake CUDA driver starts its fibers with x86-64 assembly"
#endif
static void emu_index(unsigned t) {
    emu_cur = t; threadIdx.x = t % blockDim.x; threadIdx.y = t / blockDim.x % blockDim.y; threadIdx.z = t / (blockDim.x * blockDim.y);
}
// Runs thread t until its next barrier or its end.
__attribute__((noinline)) static void emu_resume(unsigned t) {
    emu_index(t);
    if (_setjmp(emu_main_jb)) return;
    if (emu_started[t]) _longjmp(emu_jb[t], 1);
    emu_started[t] = 1;
    char* top = emu_stacks + (size_t)(t + 1) * (EMU_STACK + EMU_GUARD);  // page-aligned, as the ABI's call needs
    asm volatile("mov %0, %%rsp\n\tcall *%1\n\tud2" : : "r"(top), "r"(emu_entry) : "memory");
}
extern "C" void emu_launch(void (*fn)(void**), void** args, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    unsigned n = bx * by * bz;
    if (n > emu_cap) {
        if (emu_stacks) munmap(emu_stacks, (size_t)emu_cap * (EMU_STACK + EMU_GUARD));
        free(emu_jb); free(emu_done); free(emu_started);
        size_t each = EMU_STACK + EMU_GUARD;
        emu_stacks = (char*)mmap(nullptr, (size_t)n * each, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (emu_stacks == MAP_FAILED) { perror("fake CUDA: fiber stacks"); abort(); }
        for (unsigned t = 0; t < n; t++) mprotect(emu_stacks + (size_t)t * each, EMU_GUARD, PROT_NONE);
        emu_jb = (jmp_buf*)calloc(n, sizeof(jmp_buf));
        emu_done = (int*)calloc(n, sizeof(int)); emu_started = (int*)calloc(n, sizeof(int));
        emu_cap = n;
    }
    emu_fn = fn; emu_args = args; gridDim = {gx, gy, gz}; blockDim = {bx, by, bz};
    for (unsigned z = 0; z < gz; z++) for (unsigned y = 0; y < gy; y++) for (unsigned x = 0; x < gx; x++) {
        blockIdx = {x, y, z};
        for (unsigned t = 0; t < n; t++) emu_done[t] = emu_started[t] = 0;
        emu_fibers = true; emu_synced = false;
        emu_resume(0);
        if (!emu_synced) {
            emu_fibers = false;
            for (unsigned t = 1; t < n; t++) { emu_index(t); fn(args); }
            continue;
        }
        // Each round runs every live thread up to its next barrier; thread 0 waits at the first already.
        for (unsigned first = 1, live = 1; live; first = 0) {
            live = 0;
            for (unsigned t = first; t < n; t++) {
                if (emu_done[t]) continue;
                emu_resume(t);
                live |= !emu_done[t];
            }
            if (first && !emu_done[0]) live = 1;
        }
    }
}
template <typename... A, size_t... I>
static void emu_apply(void (*f)(A...), void** a, std::index_sequence<I...>) {
    f(*(typename std::remove_cv<typename std::remove_reference<A>::type>::type*)a[I]...);
}
template <typename... A> static void emu_call(void (*f)(A...), void** a) { emu_apply(f, a, std::index_sequence_for<A...>{}); }
// The size of each of a kernel's parameters, so that a launch can copy its arguments when it is queued.
template <typename... A> static int emu_sizes(void (*)(A...), size_t* out) {
    size_t sizes[] = {sizeof(typename std::remove_cv<typename std::remove_reference<A>::type>::type)..., 0};
    for (size_t i = 0; i < sizeof...(A); i++) out[i] = sizes[i];
    return (int)sizeof...(A);
}
)";

struct Module { void* lib; };
struct Function {
    std::string name;
    void (*tramp)(void**);
    int (*sizes)(size_t*);
    void (*launch)(void (*)(void**), void**, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned);
};

// The names of the `__global__` functions in a CUDA source.
static std::string trampolines(const std::string& src) {
    std::string out;
    const std::string key = "__global__ void ";
    for (size_t at = src.find(key); at != std::string::npos; at = src.find(key, at + 1)) {
        size_t start = at + key.size(), end = src.find('(', start);
        std::string name = src.substr(start, end - start);
        out += "extern \"C\" void emu_k_" + name + "(void** a) { emu_call(" + name + ", a); }\n";
        out += "extern \"C\" int emu_p_" + name + "(size_t* s) { return emu_sizes(" + name + ", s); }\n";
    }
    return out;
}

extern "C" {

CUresult cuModuleLoadData(void** module, const void* image) {
    LOCKED;
    std::string ptx((const char*)image);
    if (ptx.rfind(PTX_TAG, 0) != 0) return INVALID_IMAGE;
    std::string src = std::string(SHIM) + ptx.substr(sizeof PTX_TAG - 1) + "\n" + trampolines(ptx);
    // Built once per source and kept in the temp folder; written under a temporary name, then renamed.
    const char* tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    std::string base = std::string(tmp) + "/tiny-fake-cuda-" + std::to_string(std::hash<std::string>()(src));
    std::string lib = base + ".so";
    if (access(lib.c_str(), R_OK) != 0) {
        std::string part = base + "." + std::to_string(getpid());
        FILE* f = fopen((part + ".cpp").c_str(), "w");
        if (!f) return INVALID_IMAGE;
        fwrite(src.data(), 1, src.size(), f);
        fclose(f);
        std::string cmd = "g++ -std=c++17 -O2 -U_FORTIFY_SOURCE -shared -fPIC -w -o " + part + ".so " + part + ".cpp";
        int rc = system(cmd.c_str());
        remove((part + ".cpp").c_str());
        if (rc != 0 || rename((part + ".so").c_str(), lib.c_str()) != 0) {
            fprintf(stderr, "fake CUDA: g++ failed on the kernels (%s)\n", cmd.c_str());
            return INVALID_IMAGE;
        }
    }
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "fake CUDA: %s\n", dlerror()); return INVALID_IMAGE; }
    *module = new Module{h};
    return OK;
}
CUresult cuModuleUnload(void* module) { delete (Module*)module; return OK; }
CUresult cuModuleGetFunction(void** fn, void* module, const char* name) {
    Module* m = (Module*)module;
    void* tramp = dlsym(m->lib, ("emu_k_" + std::string(name)).c_str());
    void* sizes = dlsym(m->lib, ("emu_p_" + std::string(name)).c_str());
    void* launch = dlsym(m->lib, "emu_launch");
    if (!tramp || !sizes || !launch) return NOT_FOUND;
    *fn = new Function{name, (void (*)(void**))tramp, (int (*)(size_t*))sizes, (decltype(Function::launch))launch};
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int, void*) { *v = 0; return OK; }
CUresult cuFuncSetAttribute(void*, int, int) { return OK; }
CUresult cuLaunchKernel(void* fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned,
                        void* stream, void** params, void** extra) {
    if (extra || gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0 || bx * by * bz > 1024 || gy > 65535 ||
        gz > 65535)
        return INVALID_VALUE;
    LOCKED;
    Function* f = (Function*)fn;
    count("kernel " + f->name);
    // The arguments are read now, as the driver does; the kernel runs when its stream does.
    size_t sizes[64];
    int n = f->sizes(sizes);
    auto args = std::make_shared<std::vector<std::vector<char>>>();
    for (int i = 0; i < n; i++) args->emplace_back((const char*)params[i], (const char*)params[i] + sizes[i]);
    stream_of(stream)->computes = true;
    enqueue(stream_of(stream), [=] {
        std::vector<void*> ptrs;
        for (auto& a : *args) ptrs.push_back(a.data());
        f->launch(f->tramp, ptrs.data(), gx, gy, gz, bx, by, bz);
    });
    return OK;
}

}  // extern "C"

// ---- cuBLAS: column-major SGEMM by its definition, queued on the handle's stream ----
struct Blas { void* stream = nullptr; };

// An f32 rounded to the nearest bf16 (ties to even) and widened back, a NaN kept a quiet NaN: what the tensor
// cores read of an f32 operand under CUBLAS_COMPUTE_32F_FAST_16BF.
static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) u |= 0x400000u;
    else u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda, long long sa,
                  const float* b, int ldb, long long sb, float beta, float* c, int ldc, long long sc, int batch,
                  bool bf16 = false) {
    // op(A) and op(B) are copied into plain column-major buffers (rounded to bf16 for bf16 products), then each
    // column of C is a sum of A's columns.
    std::vector<float> opa((size_t)m * k), opb((size_t)k * n), col(m);
    auto in = [bf16](float v) { return bf16 ? round_bf16(v) : v; };
    for (int p = 0; p < batch; p++) {
        const float *A = a + p * sa, *B = b + p * sb;
        float* C = c + p * sc;
        for (int l = 0; l < k; l++)
            for (int i = 0; i < m; i++) opa[i + (size_t)l * m] = in(ta ? A[l + (size_t)i * lda] : A[i + (size_t)l * lda]);
        for (int j = 0; j < n; j++)
            for (int l = 0; l < k; l++) opb[l + (size_t)j * k] = in(tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb]);
        for (int j = 0; j < n; j++) {
            std::fill(col.begin(), col.end(), 0.0f);
            for (int l = 0; l < k; l++) {
                float y = opb[l + (size_t)j * k];
                const float* x = &opa[(size_t)l * m];
                for (int i = 0; i < m; i++) col[i] += x[i] * y;
            }
            for (int i = 0; i < m; i++) {
                float* out = &C[i + (size_t)j * ldc];
                *out = alpha * col[i] + (beta == 0 ? 0 : beta * *out);  // beta 0 ignores C, even NaN
            }
        }
    }
}

extern "C" {

int cublasCreate_v2(void** h) { *h = new Blas; return 0; }
int cublasDestroy_v2(void* h) { delete (Blas*)h; return 0; }
int cublasSetStream_v2(void* h, void* s) { ((Blas*)h)->stream = s; return 0; }
int cublasSetMathMode(void*, int) { return 0; }
int cublasGetMathMode(void*, int* m) { *m = 0; return 0; }
int cublasSetWorkspace_v2(void*, void*, size_t) { return 0; }
int cublasGetVersion_v2(void*, int* v) { *v = 130000; return 0; }

int cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                              long long sa, const float* b, int ldb, long long sb, const float* beta, float* c, int ldc,
                              long long sc, int batch) {
    // The documented argument checks: the leading dimensions must cover the stored rows.
    if (m < 0 || n < 0 || k < 0 || batch < 0 || ldc < std::max(1, m) || lda < std::max(1, ta ? k : m) ||
        ldb < std::max(1, tb ? n : k))
        return 7;  // CUBLAS_STATUS_INVALID_VALUE
    LOCKED;
    count(batch > 1 ? "sgemm (strided batched)" : "sgemm");
    float al = *alpha, be = *beta;  // host pointer mode: read at the call
    stream_of(((Blas*)h)->stream)->computes = true;
    enqueue(stream_of(((Blas*)h)->stream), [=] { sgemm(ta, tb, m, n, k, al, a, lda, sa, b, ldb, sb, be, c, ldc, sc, batch); });
    return 0;
}
int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                   const float* b, int ldb, const float* beta, float* c, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1);
}
// The mixed-precision product tiny uses for bf16 autocast: f32 operands and result (CUDA_R_32F, 0) with
// CUBLAS_COMPUTE_32F_FAST_16BF (75), whose operands are rounded to bf16 and summed in f32; CUBLAS_COMPUTE_32F (68)
// is plain SGEMM. Other types and compute types are refused as NOT_SUPPORTED (15), as cuBLAS refuses an unknown pair.
int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at,
                               int lda, long long sa, const void* b, int bt, int ldb, long long sb, const void* beta,
                               void* c, int ct, int ldc, long long sc, int batch, int compute, int /*algo*/) {
    if (at != 0 || bt != 0 || ct != 0 || (compute != 68 && compute != 75)) return 15;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || ldc < std::max(1, m) || lda < std::max(1, ta ? k : m) ||
        ldb < std::max(1, tb ? n : k))
        return 7;
    LOCKED;
    bool bf16 = compute == 75;
    count(bf16 ? "gemm ex (bf16)" : "gemm ex");
    float al = *(const float*)alpha, be = *(const float*)beta;
    const float *fa = (const float*)a, *fb = (const float*)b;
    float* fc = (float*)c;
    stream_of(((Blas*)h)->stream)->computes = true;
    enqueue(stream_of(((Blas*)h)->stream),
            [=] { sgemm(ta, tb, m, n, k, al, fa, lda, sa, fb, ldb, sb, be, fc, ldc, sc, batch, bf16); });
    return 0;
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda,
                 const void* b, int bt, int ldb, const void* beta, void* c, int ct, int ldc, int compute, int algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, at, lda, 0, b, bt, ldb, 0, beta, c, ct, ldc, 0, 1,
                                      compute, algo);
}

}  // extern "C"
