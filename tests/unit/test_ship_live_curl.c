/* test_ship_live.c's scenarios through the libcurl transport (endpoint_transport=curl). */
#define SHIP_LIVE_TRANSPORT SHIP_TRANSPORT_CURL
#include "test_ship_live.c"
