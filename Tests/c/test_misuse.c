/*
 * test_misuse.c — misuse of one layer across threads never crashes, and is refused cleanly.
 *   Readers (att_layer_call, att_layer_backward, att_layer_losses, att_layer_get_weight) loop
 *   on a shared layer while writers set a weight, rebuild it, apply its constraints, or destroy
 *   it and publish a new one in its place. Every status is ATT_OK, ATT_ERR_BUSY (with a message
 *   saying the layer is in use) or, after a destroy, ATT_ERR_INVALID_HANDLE; destroy is always
 *   ATT_OK. Every successful result is, bit for bit, the serial result of one of the weight
 *   states the writers create (the writers change a single weight, so there is no mixed state).
 *   Two layers: Attention (its one weight `scale`: 1 as built, 0.5, 2) and MultiHeadAttention
 *   (attention_output/bias: 0 as built, or one of two non-negative sets; a non_neg bias
 *   constraint, which leaves them as they are; an l2 kernel regularizer, whose losses no state
 *   changes).
 *   - A call still running when its layer is destroyed completes with the right result; the
 *     handle is refused afterwards.
 * Prints `N passed, N failed`.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

enum { STATES = 3, READERS = 4, WRITERS = 4, ITERATIONS = 600, MAX_LOSSES = 8 };

/* A layer the threads share, its inputs, and the serial results of each weight state. */
typedef struct {
    const char *name;
    int kind; /* 0: Attention, 1: MultiHeadAttention */
    att_shape q_shape, v_shape, out_shape;
    size_t weight;          /* the weight the writers set */
    att_shape weight_shape;
    double *state_values[STATES]; /* the weight's value per state (state 0: as built) */
    att_tensor q, v, d_out, q_grad;
    size_t out_bytes, weight_bytes;
    void *want_out[STATES], *want_backward[STATES], *want_weight[STATES];
    size_t loss_count;
    double want_losses[MAX_LOSSES];
    att_layer *_Atomic handle; /* replaced by the destroy-and-recreate writer */
} subject;

static subject g_subjects[2];

/* Creates and builds a layer of s's kind; NULL on failure. Touches no test counters. */
static att_layer *create_layer(const subject *s) {
    att_layer *layer = NULL;
    att_status st;
    if (s->kind == 0) {
        att_attention_config c = {.struct_size = sizeof c, .dtype = ATT_FLOAT32, .use_scale = 1};
        st = att_attention_create(&c, &layer);
    } else {
        att_multi_head_attention_config c = {.struct_size = sizeof c, .dtype = ATT_FLOAT32, .num_heads = 2,
                                             .key_dim = 4, .seed = 9};
        c.bias_constraint.kind = ATT_CONSTRAINT_NON_NEG;
        c.kernel_regularizer = (att_regularizer){ATT_REG_L2, 0, 0.01};
        st = att_multi_head_attention_create(&c, &layer);
    }
    if (st != ATT_OK) return NULL;
    if (att_layer_build(layer, &s->q_shape, &s->v_shape, NULL) != ATT_OK) {
        att_layer_destroy(layer);
        return NULL;
    }
    return layer;
}

/* Puts `layer` in weight state `state` (1 or 2; 0 is the state after build). */
static att_status set_state(const subject *s, att_layer *layer, int state) {
    att_tensor w = new_tensor(ATT_FLOAT32, s->weight_shape, s->state_values[state]);
    att_status st = att_layer_set_weight(layer, s->weight, &w);
    free(w.data);
    return st;
}

static att_call_args call_args(subject *s, att_tensor *out) {
    att_call_args a = {.struct_size = sizeof a, .query = &s->q, .value = &s->v, .output = out};
    return a;
}

static att_status run_call(subject *s, att_layer *layer, void *out) {
    att_tensor o = {out, ATT_FLOAT32, s->out_shape};
    att_call_args a = call_args(s, &o);
    return att_layer_call(layer, &a);
}

static att_status run_backward(subject *s, att_layer *layer, void *out) {
    att_tensor o = {out, ATT_FLOAT32, s->out_shape};
    att_call_args a = call_args(s, &o);
    att_gradient_args g = {.struct_size = sizeof g, .output_gradient = &s->d_out, .query_gradient = &s->q_grad};
    return att_layer_backward(layer, &a, &g);
}

/* Which state's bytes `got` equals (-1: none). */
static int matching_state(void *const *want, const void *got, size_t bytes) {
    for (int state = 0; state < STATES; state++)
        if (memcmp(want[state], got, bytes) == 0) return state;
    return -1;
}

/* Inputs, weight states and the serial results of each state. */
static void prepare_subject(subject *s, int kind, uint64_t seed) {
    s->kind = kind;
    s->name = kind == 0 ? "Attention" : "MultiHeadAttention";
    s->q_shape = kind == 0 ? SHAPE(2, 5, 8) : SHAPE(2, 4, 8);
    s->v_shape = kind == 0 ? SHAPE(2, 7, 8) : SHAPE(2, 6, 8);
    att_layer *layer = create_layer(s);
    if (!check(layer != NULL, "%s: create and build failed: %s", s->name, att_last_error())) exit(1);
    size_t count = 0;
    expect(att_layer_weight_count(layer, &count), ATT_OK, "", "weight_count");
    s->weight = count - 1;
    expect(att_layer_weight_info(layer, s->weight, &s->weight_shape, NULL), ATT_OK, "", "weight_info");
    expect(att_layer_output_shape(layer, &s->q_shape, &s->v_shape, NULL, &s->out_shape, NULL), ATT_OK, "",
           "output_shape");
    uint64_t rng = seed;
    size_t n = (size_t)numel(s->weight_shape);
    s->weight_bytes = n * sizeof(float);
    s->state_values[0] = NULL;
    s->state_values[1] = kind == 0 ? random_values(&rng, 1, 0.5, 0.5, ATT_FLOAT32) : random_values(&rng, n, 0, 1, ATT_FLOAT32);
    s->state_values[2] = kind == 0 ? random_values(&rng, 1, 2, 2, ATT_FLOAT32) : random_values(&rng, n, 0, 1, ATT_FLOAT32);
    double *q = random_values(&rng, (size_t)numel(s->q_shape), -1, 1, ATT_FLOAT32);
    double *v = random_values(&rng, (size_t)numel(s->v_shape), -1, 1, ATT_FLOAT32);
    double *d = random_values(&rng, (size_t)numel(s->out_shape), -1, 1, ATT_FLOAT32);
    s->q = new_tensor(ATT_FLOAT32, s->q_shape, q);
    s->v = new_tensor(ATT_FLOAT32, s->v_shape, v);
    s->d_out = new_tensor(ATT_FLOAT32, s->out_shape, d);
    s->q_grad = new_tensor(ATT_FLOAT32, s->q_shape, NULL);
    free(q), free(v), free(d);
    s->out_bytes = (size_t)numel(s->out_shape) * sizeof(float);
    for (int state = 0; state < STATES; state++) {
        if (state > 0) expect(set_state(s, layer, state), ATT_OK, "", "set_weight (serial)");
        s->want_out[state] = calloc(1, s->out_bytes);
        s->want_backward[state] = calloc(1, s->out_bytes);
        s->want_weight[state] = calloc(1, s->weight_bytes);
        att_tensor w = {s->want_weight[state], ATT_FLOAT32, s->weight_shape};
        expect(att_layer_get_weight(layer, s->weight, &w), ATT_OK, "", "get_weight (serial)");
        expect(run_call(s, layer, s->want_out[state]), ATT_OK, "", "call (serial)");
        expect(run_backward(s, layer, s->want_backward[state]), ATT_OK, "", "backward (serial)");
        double losses[MAX_LOSSES];
        size_t got = 0;
        expect(att_layer_losses(layer, NULL, losses, MAX_LOSSES, &got), ATT_OK, "", "losses (serial)");
        check(state == 0 || (got == s->loss_count && memcmp(losses, s->want_losses, got * sizeof(double)) == 0),
              "%s: the losses depend on the weight state", s->name);
        s->loss_count = got;
        memcpy(s->want_losses, losses, sizeof losses);
    }
    check(memcmp(s->want_out[1], s->want_out[2], s->out_bytes) != 0 &&
          memcmp(s->want_out[0], s->want_out[1], s->out_bytes) != 0,
          "%s: the weight states do not give different outputs", s->name);
    check(s->kind == 0 ? s->loss_count == 0 : s->loss_count == 4, "%s: %zu losses", s->name, s->loss_count);
    atomic_store(&s->handle, layer);
}

/* What one thread saw. */
typedef struct {
    subject *s;
    int role; /* readers: 0; writers: 1 set_weight, 2 build, 3 apply_constraints, 4 destroy and recreate */
    long ok, busy, invalid, other, wrong, bad_message, destroy_failed;
    char first_problem[200];
} tally;

/* Counts `st`; ATT_ERR_BUSY must say the layer is in use. */
static void count(tally *t, att_status st, const char *what) {
    if (st == ATT_OK) t->ok++;
    else if (st == ATT_ERR_BUSY) {
        t->busy++;
        if (!contains_any(att_last_error(), "in use by another thread")) t->bad_message++;
    } else if (st == ATT_ERR_INVALID_HANDLE) t->invalid++;
    else {
        t->other++;
        if (!t->first_problem[0])
            snprintf(t->first_problem, sizeof t->first_problem, "%s: %s \"%s\"", what, att_status_name(st),
                     att_last_error());
    }
}

/* Sleeps 20 µs on every other turn. */
static void pause_briefly(int turn) {
    struct timespec pause = {0, 20 * 1000};
    if (turn % 2) nanosleep(&pause, NULL);
}

static void *reader(void *arg) {
    tally *t = arg;
    subject *s = t->s;
    void *out = malloc(s->out_bytes), *weight = malloc(s->weight_bytes);
    for (int i = 0; i < ITERATIONS; i++) {
        att_layer *layer = atomic_load(&s->handle);
        att_status st;
        switch (i % 4) {
        case 0:
            count(t, st = run_call(s, layer, out), "call");
            if (st == ATT_OK) t->wrong += matching_state(s->want_out, out, s->out_bytes) < 0;
            break;
        case 1:
            count(t, st = run_backward(s, layer, out), "backward");
            if (st == ATT_OK) t->wrong += matching_state(s->want_backward, out, s->out_bytes) < 0;
            break;
        case 2: {
            double losses[MAX_LOSSES];
            size_t got = 0;
            count(t, st = att_layer_losses(layer, NULL, losses, MAX_LOSSES, &got), "losses");
            if (st == ATT_OK)
                t->wrong += got != s->loss_count || memcmp(losses, s->want_losses, got * sizeof(double)) != 0;
            break;
        }
        default: {
            att_tensor w = {weight, ATT_FLOAT32, s->weight_shape};
            count(t, st = att_layer_get_weight(layer, s->weight, &w), "get_weight");
            if (st == ATT_OK) t->wrong += matching_state(s->want_weight, weight, s->weight_bytes) < 0;
        }
        }
        pause_briefly(i); /* gaps in which the writers can get in */
    }
    free(out), free(weight);
    return NULL;
}

static void *writer(void *arg) {
    tally *t = arg;
    subject *s = t->s;
    for (int i = 0; i < ITERATIONS; i++) {
        att_layer *layer = atomic_load(&s->handle);
        switch (t->role) {
        case 1: count(t, set_state(s, layer, 1 + i % 2), "set_weight"); break;
        case 2: count(t, att_layer_build(layer, &s->q_shape, &s->v_shape, NULL), "build"); break;
        case 3: count(t, att_layer_apply_constraints(layer), "apply_constraints"); break;
        default:
            if (i % 8 == 0) { /* a new layer every 8th turn: the others keep using one */
                att_layer *fresh = create_layer(s);
                if (!fresh || (i % 16 && set_state(s, fresh, 1) != ATT_OK)) {
                    count(t, ATT_ERR_INTERNAL, "create, build or set_weight of a private layer");
                    break;
                }
                att_layer *old = atomic_exchange(&s->handle, fresh);
                t->destroy_failed += att_layer_destroy(old) != ATT_OK;
                t->ok++;
            }
        }
        pause_briefly(i + 1);
    }
    return NULL;
}

static void misuse(int kind) {
    subject *s = &g_subjects[kind];
    prepare_subject(s, kind, 100 + (uint64_t)kind);
    tally tallies[READERS + WRITERS] = {{0}};
    pthread_t threads[READERS + WRITERS];
    for (int i = 0; i < READERS + WRITERS; i++) {
        tallies[i] = (tally){.s = s, .role = i < READERS ? 0 : 1 + (i - READERS)};
        check(pthread_create(&threads[i], NULL, i < READERS ? reader : writer, &tallies[i]) == 0,
              "pthread_create failed");
    }
    for (int i = 0; i < READERS + WRITERS; i++) pthread_join(threads[i], NULL);
    static const char *const roles[] = {"reader", "set_weight", "build", "apply_constraints", "destroy+recreate"};
    long busy = 0;
    for (int i = 0; i < READERS + WRITERS; i++) {
        tally *t = &tallies[i];
        const char *role = roles[t->role];
        printf("  %s %s: %ld ok, %ld busy, %ld invalid handle\n", s->name, role, t->ok, t->busy, t->invalid);
        check(t->other == 0, "%s %s: %ld statuses other than OK, BUSY, INVALID_HANDLE; first: %s", s->name, role,
              t->other, t->first_problem);
        check(t->wrong == 0, "%s %s: %ld successful results match no weight state", s->name, role, t->wrong);
        check(t->bad_message == 0, "%s %s: %ld ATT_ERR_BUSY messages do not say the layer is in use", s->name,
              role, t->bad_message);
        check(t->destroy_failed == 0, "%s %s: att_layer_destroy failed %ld times", s->name, role, t->destroy_failed);
        check(t->ok > 0, "%s %s: no call succeeded", s->name, role);
        busy += t->busy;
    }
    check(busy > 0, "%s: no thread ever met ATT_ERR_BUSY: the test did not race", s->name);
    /* The layer in place afterwards works, and a writer alone is never refused. */
    att_layer *layer = atomic_load(&s->handle);
    expect(att_layer_build(layer, &s->q_shape, &s->v_shape, NULL), ATT_OK, "", "build after the threads");
    void *out = malloc(s->out_bytes);
    expect(run_call(s, layer, out), ATT_OK, "", "call after the threads");
    check(memcmp(out, s->want_out[0], s->out_bytes) == 0, "%s: the call after the threads differs", s->name);
    free(out);
    expect(att_layer_destroy(layer), ATT_OK, "", "destroy after the threads");
}

static void attention_misuse(void) { misuse(0); }
static void multi_head_misuse(void) { misuse(1); }

/* A long call on its own thread; the main thread destroys the layer while it runs. */
typedef struct {
    att_layer *layer;
    att_tensor q, out;
    atomic_int started;
    att_status status;
} long_call;

static void *run_long_call(void *arg) {
    long_call *c = arg;
    att_call_args a = {.struct_size = sizeof a, .query = &c->q, .value = &c->q, .output = &c->out};
    atomic_store(&c->started, 1);
    c->status = att_layer_call(c->layer, &a);
    return NULL;
}

static void destroy_during_a_call(void) {
    att_multi_head_attention_config cfg = {.struct_size = sizeof cfg, .dtype = ATT_FLOAT32, .num_heads = 4,
                                           .key_dim = 16, .seed = 3};
    att_shape shape = SHAPE(1, 3072, 32);
    uint64_t rng = 7;
    double *x = random_values(&rng, (size_t)numel(shape), -1, 1, ATT_FLOAT32);
    att_tensor q = new_tensor(ATT_FLOAT32, shape, x);
    free(x);
    att_tensor want = new_tensor(ATT_FLOAT32, shape, NULL);
    att_layer *reference = NULL;
    expect(att_multi_head_attention_create(&cfg, &reference), ATT_OK, "", "create");
    expect(att_layer_build(reference, &shape, &shape, NULL), ATT_OK, "", "build");
    att_call_args a = {.struct_size = sizeof a, .query = &q, .value = &q, .output = &want};
    expect(att_layer_call(reference, &a), ATT_OK, "", "serial call");
    expect(att_layer_destroy(reference), ATT_OK, "", "destroy");
    int destroyed_while_running = 0;
    for (int attempt = 0; attempt < 5 && !destroyed_while_running; attempt++) {
        long_call c = {.q = q, .out = new_tensor(ATT_FLOAT32, shape, NULL)};
        expect(att_multi_head_attention_create(&cfg, &c.layer), ATT_OK, "", "create");
        expect(att_layer_build(c.layer, &shape, &shape, NULL), ATT_OK, "", "build");
        pthread_t thread;
        check(pthread_create(&thread, NULL, run_long_call, &c) == 0, "pthread_create failed");
        while (!atomic_load(&c.started)) sched_yield();
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
        expect(att_layer_destroy(c.layer), ATT_OK, "", "destroy while a call runs");
        pthread_join(thread, NULL);
        if (c.status == ATT_OK) {
            destroyed_while_running = 1;
            check(memcmp(c.out.data, want.data, (size_t)numel(shape) * sizeof(float)) == 0,
                  "the call that ran through a destroy gave a different result");
        } else {
            expect(c.status, ATT_ERR_INVALID_HANDLE, "not a live layer", "a call that began after the destroy");
        }
        expect(att_layer_call(c.layer, &a), ATT_ERR_INVALID_HANDLE, "not a live layer", "a call after the destroy");
        expect(att_layer_destroy(c.layer), ATT_ERR_INVALID_HANDLE, "not a live layer", "destroy again");
        free(c.out.data);
    }
    check(destroyed_while_running, "no attempt destroyed the layer while its call ran");
    free(q.data), free(want.data);
}

int main(int argc, char **argv) {
    static const test_group groups[] = {
        {"attention_misuse", attention_misuse},
        {"multi_head_misuse", multi_head_misuse},
        {"destroy_during_a_call", destroy_during_a_call},
    };
    return run_groups(argc, argv, groups, (int)(sizeof groups / sizeof groups[0]));
}
