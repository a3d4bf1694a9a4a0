/* The twin's step loop in C: the same vLLM V1 scheduler, adapter slots, port-limited client and step-time
 * model as twin/scheduler.py, twin/lora_slots.py, twin/client.py and twin/step_time.py, stepped one engine
 * step at a time (what the Python engine does with SimOptions(exact_steps=True)), tens of times
 * faster. twin/native.py calls it; tests/test_native_core.py checks it against the Python engine.
 *
 * Floating point follows the Python code operation by operation (built with -ffp-contract=off), so step
 * times, and hence every time the table records, come out bit for bit the same as the Python engine's.
 * Only the Python C API is used (no numpy headers): arrays arrive through the buffer protocol.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef int64_t i64;
_Static_assert(sizeof(Py_ssize_t) == sizeof(int64_t), "Py_ssize_t must be 64-bit");
#define INF_KEY INT64_MAX

typedef struct { i64 rid, prompt, output, computed, generated, blocks, adapter; } Running;

typedef struct { double *v; i64 n, cap; } DoubleVec;
typedef struct { i64 *v; i64 n, cap; } IntVec;

/* Room for element n of a growing array of `size`-byte elements (capacity *cap, doubled when full). */
static void *reserve(void *v, i64 n, i64 *cap, size_t size) {
    if (n < *cap) return v;
    i64 grown = *cap ? 2 * *cap : 1024;
    void *p = realloc(v, (size_t)grown * size);
    if (p) *cap = grown;
    return p;
}

/* Append x to a growing array; 0, or -1 when out of memory. */
#define DEFINE_PUSH(name, Vec, T)                              \
    static int name(Vec *a, T x) {                             \
        T *v = reserve(a->v, a->n, &a->cap, sizeof(T));        \
        if (!v) return -1;                                     \
        a->v = v;                                              \
        a->v[a->n++] = x;                                      \
        return 0;                                              \
    }
DEFINE_PUSH(dpush, DoubleVec, double)
DEFINE_PUSH(ipush, IntVec, i64)

typedef struct {
    /* the request table (twin/requests.py) */
    i64 n;
    const double *arrival;
    const i64 *adapter, *prompt, *output;
    i64 *generated, *preemptions;
    double *first_token, *finish;
    /* the server */
    i64 n_adapters, max_loras, max_num_seqs, max_batched_tokens, bs, max_blocks, prealloc;
    /* scheduler: running requests in running order, per-adapter waiting queues (as twin/scheduler.py) */
    Running *run;
    i64 nrun, free_blocks;
    i64 *by_adapter, *next_fresh, *fresh_end, *head, *run_count;
    i64 *front_top, *front_next, *front_key; /* preempted requests: a stack per adapter (appendleft/popleft) */
    unsigned char *dropped;
    i64 arrived, fresh_taken, n_dropped, n_front, next_front_key;
    /* the batch's distinct adapters, stamped per step */
    i64 *stamp, *batch_ids, epoch, nb;
    i64 *take, *new_adapters;
    /* adapter slots (twin/lora_slots.py) */
    unsigned char *resident;
    i64 *last_used, clock, n_resident;
    /* port-limited client (twin/client.py) */
    i64 ports;
    double time_wait;
    DoubleVec closed_at;
    IntVec closed_by;
} Sim;

static i64 imin(i64 a, i64 b) { return a < b ? a : b; }
static i64 ceil_div(i64 a, i64 b) { return (a + b - 1) / b; }  /* a >= 0, b > 0 */

/* -- waiting queue ---------------------------------------------------------------------------- */
static i64 n_waiting(const Sim *s) { return s->arrived - s->fresh_taken - s->n_dropped + s->n_front; }

static void update_head(Sim *s, i64 a) {
    i64 i = s->next_fresh[a];
    s->head[a] = s->front_top[a] >= 0 ? s->front_key[s->front_top[a]]
                 : (i < s->fresh_end[a] ? s->by_adapter[i] : INF_KEY);
}

static void skip_dropped(Sim *s, i64 a) {
    i64 i = s->next_fresh[a];
    while (i < s->fresh_end[a] && s->dropped[s->by_adapter[i]]) i++;
    s->next_fresh[a] = i;
}

static void requeue_front(Sim *s, i64 rid) {
    i64 a = s->adapter[rid];
    s->front_next[rid] = s->front_top[a];
    s->front_key[rid] = s->next_front_key--;
    s->front_top[a] = rid;
    s->n_front++;
    update_head(s, a);
}

static i64 peek_waiting(const Sim *s, i64 a) {
    return s->front_top[a] >= 0 ? s->front_top[a] : s->by_adapter[s->next_fresh[a]];
}

static void pop_waiting(Sim *s, i64 a) {
    if (s->front_top[a] >= 0) {
        s->front_top[a] = s->front_next[s->front_top[a]];
        s->n_front--;
    } else {
        s->next_fresh[a]++;
        s->fresh_taken++;
        if (s->n_dropped) skip_dropped(s, a);
    }
    update_head(s, a);
}

/* -- the client --------------------------------------------------------------------------------- */
static i64 bisect_right(const DoubleVec *a, double x) {
    i64 lo = 0, hi = a->n;
    while (lo < hi) {
        i64 mid = (lo + hi) / 2;
        if (x < a->v[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

static i64 ports_free(const Sim *s, double now) {
    i64 released = s->closed_by.v[bisect_right(&s->closed_at, now - s->time_wait) - 1];
    return s->ports - (s->arrived - s->n_dropped - released);
}

static int ports_close(Sim *s, double t, i64 count) {
    for (i64 c = 0; c < count; c++) {
        if (t == s->closed_at.v[s->closed_at.n - 1]) {
            s->closed_by.v[s->closed_by.n - 1]++;
        } else if (dpush(&s->closed_at, t) || ipush(&s->closed_by, s->closed_by.v[s->closed_by.n - 1] + 1)) {
            return -1;
        }
    }
    return 0;
}

/* Requests that arrived by `t` reach the scheduler; a client out of ports drops the rest. */
static void arrive(Sim *s, double t) {
    i64 upto = s->arrived;
    while (upto < s->n && s->arrival[upto] <= t) upto++;
    if (s->ports && upto > s->arrived) {
        i64 free = ports_free(s, t);
        if (upto - s->arrived > free) {
            i64 first = s->arrived + (free > 0 ? free : 0);
            for (i64 r = first; r < upto; r++) s->dropped[r] = 1;
            s->n_dropped += upto - first;
            for (i64 r = first; r < upto; r++) {
                skip_dropped(s, s->adapter[r]);
                update_head(s, s->adapter[r]);
            }
        }
    }
    s->arrived = upto;
}

/* -- one step ----------------------------------------------------------------------------------- */
static void preempt_tail(Sim *s, i64 keep) {
    for (i64 j = s->nrun - 1; j >= keep; j--) {
        Running *q = &s->run[j];
        s->generated[q->rid] = q->generated;
        s->preemptions[q->rid]++;
        s->run_count[q->adapter]--;
        requeue_front(s, q->rid);
    }
    s->nrun = keep;
}

static void stamp_adapter(Sim *s, i64 a) {
    if (s->stamp[a] != s->epoch) {
        s->stamp[a] = s->epoch;
        s->batch_ids[s->nb++] = a;
    }
}

/* vLLM's running loop, request by request (preempting the newest until the one at hand fits), then FCFS
 * admission with the max_loras skip. Returns the scheduled count k (take[0..k)); sets *victims, *admitted. */
static i64 schedule(Sim *s, i64 *victims, i64 *admitted) {
    i64 left = s->max_batched_tokens, kb = 0;
    for (i64 i = 0; i < s->nrun && left > 0; i++) {  /* chunked prefill within the token budget */
        Running *q = &s->run[i];
        i64 t = imin(q->prompt + q->generated - q->computed, left);
        s->take[kb++] = t;
        left -= t;
    }
    i64 budget = s->max_batched_tokens, free = s->free_blocks, n = s->nrun, i = 0;  /* budget: what granted ones leave */
    while (i < kb && i < n) {
        Running *q = &s->run[i];
        i64 need = ceil_div(q->computed + s->take[i], s->bs) - q->blocks;
        while (need > free && n > i) free += s->run[--n].blocks;  /* preempt the newest running request */
        if (n == i) break;
        if (need > 0) {
            i64 g = imin(imin(need + s->prealloc, free), s->max_blocks - q->blocks);
            q->blocks += g;
            free -= g;
        }
        budget -= s->take[i];
        i++;
    }
    *victims = s->nrun - n;
    preempt_tail(s, n);
    s->free_blocks = free;
    i64 k = i;
    s->epoch++;
    s->nb = 0;
    for (i64 j = 0; j < k; j++) stamp_adapter(s, s->run[j].adapter);
    *admitted = 0;
    if (*victims || !n_waiting(s)) return k;
    i64 waiting = n_waiting(s);
    while (waiting && budget > 0) {
        if (s->nrun >= s->max_num_seqs) break;
        i64 a = -1;
        if (s->nb >= s->max_loras) {  /* only the batch's adapters may join it */
            for (i64 b = 0; b < s->nb; b++)
                if (a < 0 || s->head[s->batch_ids[b]] < s->head[a]) a = s->batch_ids[b];
            if (s->head[a] >= s->arrived) break;  /* every waiting request belongs to a skipped adapter */
        } else {
            for (i64 b = 0; b < s->n_adapters; b++)
                if (a < 0 || s->head[b] < s->head[a]) a = b;
        }
        i64 rid = peek_waiting(s, a);
        i64 gen = s->generated[rid], prompt = s->prompt[rid];
        i64 t = imin(prompt + gen, budget);
        i64 need = ceil_div(t, s->bs);
        if (need > s->free_blocks) break;
        pop_waiting(s, a);
        waiting--;
        i64 granted = imin(imin(need + s->prealloc, s->free_blocks), s->max_blocks);
        s->free_blocks -= granted;
        s->run_count[a]++;
        stamp_adapter(s, a);
        s->run[s->nrun++] = (Running){rid, prompt, s->output[rid], 0, gen, granted, a};
        s->take[k] = t;
        s->new_adapters[*admitted] = a;
        k++;
        (*admitted)++;
        budget -= t;
    }
    return k;
}

static int cmp_i64(const void *x, const void *y) {
    i64 a = *(const i64 *)x, b = *(const i64 *)y;
    return (a > b) - (a < b);
}

/* Make the batch's adapters resident (LRU eviction outside the batch); returns the loads. */
static i64 activate(Sim *s, i64 k, i64 admitted) {
    s->clock++;
    i64 loads = 0, m = 0;
    for (i64 j = 0; j < admitted; j++)
        if (!s->resident[s->new_adapters[j]]) s->new_adapters[m++] = s->new_adapters[j];
    if (m) {
        qsort(s->new_adapters, (size_t)m, sizeof(i64), cmp_i64);
        for (i64 j = 0; j < k; j++) s->last_used[s->run[j].adapter] = s->clock;
        for (i64 j = 0; j < m; j++) {
            i64 a = s->new_adapters[j];
            if (j && a == s->new_adapters[j - 1]) continue;
            if (s->n_resident >= s->max_loras) {
                i64 victim = -1;
                for (i64 b = 0; b < s->n_adapters; b++)
                    if (s->resident[b] && (victim < 0 || s->last_used[b] < s->last_used[victim])) victim = b;
                s->resident[victim] = 0;
                s->n_resident--;
            }
            s->resident[a] = 1;
            s->n_resident++;
            loads++;
        }
    }
    for (i64 j = 0; j < k; j++) s->last_used[s->run[j].adapter] = s->clock;
    return loads;
}

/* Apply a step ending at `end` to the first k running requests; finished ones leave, in order. */
static i64 advance(Sim *s, i64 k, double end) {
    i64 kept = 0, done = 0;
    for (i64 j = 0; j < s->nrun; j++) {
        Running q = s->run[j];
        if (j < k) {
            q.computed += s->take[j];
            if (q.computed == q.prompt + q.generated) {
                q.generated++;
                if (q.generated == 1) s->first_token[q.rid] = end;
            }
            if (q.generated >= q.output) {
                s->finish[q.rid] = end;
                s->generated[q.rid] = q.generated;
                s->free_blocks += q.blocks;
                s->run_count[q.adapter]--;
                done++;
                continue;
            }
        }
        s->run[kept++] = q;
    }
    s->nrun = kept;
    return done;
}

/* StepTimePredictor.coefficients(), in that order */
typedef struct {
    double fixed_ms, prefill_ms, prefill_sq_ms, waiting_ms, load_ms, seq_ms, ctx_ms, adapter_ms;
    double ws_scale, ws_lo, ws_hi, ws_log_knee, ws_log_span;
} StepModel;

/* StepTimePredictor.working_set_ms */
static double working_set_ms(const StepModel *m, double tokens) {
    double w = tokens * m->ws_scale;
    if (w <= 0.0) return 0.0;
    double ramp = (log(w) - m->ws_log_knee) / m->ws_log_span;
    ramp = ramp < 0.0 ? 0.0 : ramp > 1.0 ? 1.0 : ramp;
    return w * (m->ws_lo + (m->ws_hi - m->ws_lo) * ramp);
}

/* twin/step_time.py StepTimePredictor.seconds, term by term in the same order. */
static double step_seconds(const StepModel *m, i64 decode_seqs, i64 prefill, i64 context, i64 distinct, i64 waiting,
                           i64 loads) {
    double p = (double)prefill;
    double scalar = m->fixed_ms + (m->prefill_ms + m->prefill_sq_ms * p) * p + m->waiting_ms * (double)waiting
                    + m->load_ms * (double)loads;
    return (scalar + m->seq_ms * (double)decode_seqs + m->ctx_ms * (double)context
            + m->adapter_ms * (double)distinct + working_set_ms(m, (double)(decode_seqs + prefill))) / 1000.0;
}

typedef struct { i64 steps, loads, preemptions; DoubleVec itl_d; IntVec itl_w; } Stats;

static int run_loop(Sim *s, const StepModel *model, double duration, Stats *st) {
    double now = 0.0;
    while (now < duration) {
        arrive(s, now);
        if (!s->nrun && !n_waiting(s)) {
            if (s->arrived >= s->n) break;
            now = s->arrival[s->arrived];
            continue;
        }
        i64 victims, admitted;
        i64 k = schedule(s, &victims, &admitted);
        st->preemptions += victims;
        if (!k) {  /* nothing fits (a request longer than the whole KV cache waits forever, as in vLLM) */
            if (s->arrived >= s->n) break;
            if (s->arrival[s->arrived] > now) now = s->arrival[s->arrived];
            continue;
        }
        i64 n_decode = 0, tokens = 0, context = 0;
        for (i64 j = 0; j < k; j++) {
            tokens += s->take[j];
            if (s->take[j] == 1 && s->run[j].generated >= 1) {
                n_decode++;
                context += s->run[j].computed;
            }
        }
        i64 loads = activate(s, k, admitted);
        st->loads += loads;
        double dt = step_seconds(model, n_decode, tokens - n_decode, context, s->nb, n_waiting(s), loads);
        double end = now + dt;
        i64 done = advance(s, k, end);
        if (s->ports && done && ports_close(s, end, done)) return -1;
        st->steps++;
        if (n_decode && (dpush(&st->itl_d, dt) || ipush(&st->itl_w, n_decode))) return -1;
        now += dt;
    }
    return 0;
}

static void *zalloc(i64 count, size_t size) { return calloc((size_t)(count > 0 ? count : 1), size); }

static PyObject *simulate(PyObject *self, PyObject *args) {
    Py_buffer b_arr, b_ad, b_pr, b_out, b_gen, b_first, b_fin, b_pre;
    Sim s;
    StepModel m;
    double duration;
    memset(&s, 0, sizeof s);
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*w*w*(nnnnnnnn)(ddddddddddddd)ndd", &b_arr, &b_ad, &b_pr, &b_out, &b_gen,
                          &b_first, &b_fin, &b_pre, &s.n_adapters, &s.max_loras, &s.max_num_seqs,
                          &s.max_batched_tokens, &s.bs, &s.max_blocks, &s.prealloc, &s.free_blocks, &m.fixed_ms,
                          &m.prefill_ms, &m.prefill_sq_ms, &m.waiting_ms, &m.load_ms, &m.seq_ms, &m.ctx_ms,
                          &m.adapter_ms, &m.ws_scale, &m.ws_lo, &m.ws_hi, &m.ws_log_knee,
                          &m.ws_log_span, &s.ports, &s.time_wait, &duration))
        return NULL;
    Py_buffer *bufs[] = {&b_arr, &b_ad, &b_pr, &b_out, &b_gen, &b_first, &b_fin, &b_pre};
    s.n = b_arr.len / (Py_ssize_t)sizeof(double);
    PyObject *result = NULL;
    for (int j = 0; j < 8; j++) {
        if (bufs[j]->len != s.n * 8) {
            PyErr_SetString(PyExc_ValueError, "request arrays must all hold one 8-byte value per request");
            goto release;
        }
    }
    s.arrival = b_arr.buf; s.adapter = b_ad.buf; s.prompt = b_pr.buf; s.output = b_out.buf;
    s.generated = b_gen.buf; s.first_token = b_first.buf; s.finish = b_fin.buf; s.preemptions = b_pre.buf;
    for (i64 r = 0; r < s.n; r++) {
        if (s.adapter[r] < 0 || s.adapter[r] >= s.n_adapters) {
            PyErr_SetString(PyExc_ValueError, "request adapter index out of range");
            goto release;
        }
    }
    i64 A = s.n_adapters, cap = imin(s.max_num_seqs, s.n) + 1;  /* at most every request runs at once */
    s.run = zalloc(cap, sizeof(Running));
    s.take = zalloc(cap, sizeof(i64));
    s.new_adapters = zalloc(cap, sizeof(i64));
    s.by_adapter = zalloc(s.n, sizeof(i64));
    s.front_next = zalloc(s.n, sizeof(i64));
    s.front_key = zalloc(s.n, sizeof(i64));
    s.dropped = zalloc(s.n, 1);
    s.next_fresh = zalloc(A, sizeof(i64));
    s.fresh_end = zalloc(A, sizeof(i64));
    s.head = zalloc(A, sizeof(i64));
    s.run_count = zalloc(A, sizeof(i64));
    s.front_top = zalloc(A, sizeof(i64));
    s.stamp = zalloc(A, sizeof(i64));
    s.batch_ids = zalloc(A, sizeof(i64));
    s.resident = zalloc(A, 1);
    s.last_used = zalloc(A, sizeof(i64));
    Stats st;
    memset(&st, 0, sizeof st);
    int failed = !(s.run && s.take && s.new_adapters && s.by_adapter && s.front_next && s.front_key && s.dropped
                   && s.next_fresh && s.fresh_end && s.head && s.run_count && s.front_top && s.stamp && s.batch_ids
                   && s.resident && s.last_used)
                 || dpush(&s.closed_at, -HUGE_VAL) || ipush(&s.closed_by, 0);
    if (!failed) {
        /* fresh requests per adapter, in arrival (id) order: a counting sort */
        for (i64 r = 0; r < s.n; r++) s.fresh_end[s.adapter[r]]++;
        for (i64 a = 0, start = 0; a < A; a++) {
            i64 count = s.fresh_end[a];
            s.next_fresh[a] = start;
            s.fresh_end[a] = start + count;
            start += count;
        }
        for (i64 a = 0; a < A; a++) s.stamp[a] = s.front_top[a] = -1, s.last_used[a] = -1;
        i64 *cursor = s.head;  /* borrowed as the sort's cursor, then set properly */
        for (i64 a = 0; a < A; a++) cursor[a] = s.next_fresh[a];
        for (i64 r = 0; r < s.n; r++) s.by_adapter[cursor[s.adapter[r]]++] = r;
        for (i64 a = 0; a < A; a++) update_head(&s, a);
        s.next_front_key = -1;
        Py_BEGIN_ALLOW_THREADS
        failed = run_loop(&s, &m, duration, &st);
        Py_END_ALLOW_THREADS
    }
    if (failed) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("{s:n,s:n,s:n,s:n,s:y#,s:y#}", "steps", st.steps, "loads", st.loads, "preemptions",
                               st.preemptions, "dropped", s.n_dropped, "itl_d", (char *)st.itl_d.v,
                               (Py_ssize_t)(st.itl_d.n * 8), "itl_w", (char *)st.itl_w.v, (Py_ssize_t)(st.itl_w.n * 8));
    }
    free(s.run); free(s.take); free(s.new_adapters); free(s.by_adapter); free(s.front_next); free(s.front_key);
    free(s.dropped); free(s.next_fresh); free(s.fresh_end); free(s.head); free(s.run_count); free(s.front_top);
    free(s.stamp); free(s.batch_ids); free(s.resident); free(s.last_used); free(s.closed_at.v); free(s.closed_by.v);
    free(st.itl_d.v); free(st.itl_w.v);
release:
    for (int j = 0; j < 8; j++) PyBuffer_Release(bufs[j]);
    return result;
}

static PyMethodDef methods[] = {
    {"simulate", simulate, METH_VARARGS,
     "simulate(arrival, adapter, prompt, output, generated, first_token, finish, preemptions, server, step_model, "
     "ports, time_wait_s, duration) -> stats: step the engine to `duration`, filling the four output arrays."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", "The twin's step loop in C.", -1, methods};

PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
