/* pullwatch — the agent's helper threads (the ledger load, the blob readers): a stack of
 * their own, mapped for them (never touched pages cost nothing; unmapped when the thread
 * is joined, so an idle agent keeps none), and no signals — signals are the event loop's,
 * read from its signalfd. A thread started with signals open takes a SIGTERM sent while
 * it runs, and the default action kills the agent (exit 143: test_ledger_start). */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>

/* Start fn(arg) on a stack of stack_size bytes mapped here, all signals blocked. On
 * success *ret_stack is the stack (thread_stack_free() it after the join); on failure
 * -errno and nothing is left mapped. */
static inline int thread_start(pthread_t *ret, void **ret_stack, size_t stack_size, void *(*fn)(void *), void *arg) {
        void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED)
                return -ENOMEM;
        pthread_attr_t attr;
        sigset_t all;
        sigfillset(&all);
        (void) pthread_attr_init(&attr);
        (void) pthread_attr_setstack(&attr, stack, stack_size);
        (void) pthread_attr_setsigmask_np(&attr, &all);
        int r = -pthread_create(ret, &attr, fn, arg);
        (void) pthread_attr_destroy(&attr);
        if (r < 0) {
                munmap(stack, stack_size);
                return r;
        }
        *ret_stack = stack;
        return 0;
}

static inline void thread_stack_free(void *stack, size_t stack_size) {
        if (stack)
                munmap(stack, stack_size);
}
