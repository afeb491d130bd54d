-- The last resort for lighttpd's own HTML error page (lighttpd.conf runs this script, with mod_magnet, at the
-- start of each response of the error handler's route). lighttpd hands its errors to the app through
-- server.error-handler; when that request fails too (every process of the program it reached was killed at
-- once, or is being restarted), lighttpd would send its HTML page. This sends the API's JSON error shape
-- instead: 503 `unavailable` for a failure of the server side (a retry may succeed; lib/http.c turns the
-- server's 500 into 503 the same way), and the status kept for a refused request. Responses of the app (JSON)
-- pass untouched.
local r = lighty.r
local status = r.req_item.http_status
if status < 400 or r.resp_header["Content-Type"] ~= "text/html" then
    return 0
end
local code, message
if status >= 500 then
    status, code, message = 503, "unavailable", "A backing service is temporarily unavailable; try again shortly."
    r.resp_header["Retry-After"] = "1" -- as the app's 503s: the program is being restarted
else
    code, message = "bad_request", "The request is malformed."
end
r.resp_header["Content-Type"] = "application/json; charset=utf-8"
r.resp_body.set({ '{"error":{"code":"' .. code .. '","message":"' .. message .. '"}}\n' })
return status
