/* libcurl is loaded on first use, not by the dynamic linker: an agent without an
 * endpoint never maps it (see include/pullwatch/curlshim.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "pullwatch/curlshim.h"
#include "pullwatch/util.h"

static bool mapped(const char *needle) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/maps", "re");
        assert_non_null(f);
        char line[1024];
        while (fgets(line, sizeof line, f))
                if (strstr(line, needle))
                        return true;
        return false;
}

static void test_loaded_on_first_use(void **state) {
        assert_false(curlshim_loaded());
        assert_false(mapped("libcurl"));
        assert_false(mapped("libssl"));

        CURL *e = curl_easy_init(); /* the first libcurl call loads it */
        assert_non_null(e);
        assert_true(curlshim_loaded());
        assert_true(mapped("libcurl"));
        assert_int_equal(curlshim_load(NULL, 0), 0); /* idempotent */

        /* each argument type of curl_easy_setopt is forwarded: long, pointer, off_t */
        assert_int_equal(curl_easy_setopt(e, CURLOPT_VERBOSE, 0L), CURLE_OK);
        assert_int_equal(curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:1/"), CURLE_OK);
        assert_int_equal(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) 5), CURLE_OK);
        /* and the getinfo pointer */
        char *url = NULL;
        assert_int_equal(curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
        assert_string_equal(url, "http://127.0.0.1:1/");
        assert_string_equal(curl_easy_strerror(CURLE_OK), "No error");

        struct curl_slist *l = curl_slist_append(NULL, "X-Test: 1");
        assert_non_null(l);
        assert_string_equal(l->data, "X-Test: 1");
        curl_slist_free_all(l);
        curl_easy_cleanup(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_loaded_on_first_use),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
