/*
 * A leak check that names the test.  Criterion settles a test's result
 * before its fini runs: a failed check there, or LeakSanitizer's report at
 * exit, only shows up as a crash "in setup or teardown".  END_TEST() runs
 * the including file's finish() and then checks for leaks in the test body.
 */
#ifndef OL_TEST_LEAK_H
#define OL_TEST_LEAK_H

#include <criterion/criterion.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

static inline void leak_check(void)
{
#ifdef __SANITIZE_ADDRESS__
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked");
#endif
}

#define END_TEST()                                                         \
    do {                                                                   \
        finish();                                                          \
        leak_check();                                                      \
    } while (0)

#endif
