/* The benchmark baseline: a do-nothing FastCGI handler (accept, answer a fixed JSON body, finish). The cached
 * GET /chatroom is measured against this behind the same web server. */
#include "fcgi_finish.h"
#include <fcgiapp.h>
#include <string.h>

int main(void)
{
    static const char resp[] = "Status: 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                               "Content-Length: 16\r\n\r\n{\"chatrooms\":[]}";
    FCGX_Request req;
    if (FCGX_Init() != 0)
        return 1;
    FCGX_InitRequest(&req, 0, FCGI_FAIL_ACCEPT_ON_INTR);
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutStr(resp, (int)strlen(resp), req.out);
        bench_finish(&req);
    }
    return 0;
}
