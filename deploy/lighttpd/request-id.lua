-- X-Request-Id on the responses lighttpd makes itself, the static files (lighttpd.conf runs this script, with
-- mod_magnet, at the start of each of their responses). Like the app: the client's own id when it is sane (1 to
-- 64 of A-Z a-z 0-9 . _ : -), else 32 random hex digits. A response that has one already (the app's, through
-- the error handler) keeps it.
local r = lighty.r
if r.resp_header["X-Request-Id"] then
    return 0
end
local id = r.req_header["X-Request-Id"]
if not id or #id > 64 or not id:match("^[%w._:-]+$") then
    local rand = lighty.c.rand
    id = string.format("%08x%08x%08x%08x", rand() & 0xffffffff, rand() & 0xffffffff, rand() & 0xffffffff,
        rand() & 0xffffffff)
end
r.resp_header["X-Request-Id"] = id
return 0
