-- bench/http_lease.lua - wrk script for bench/http: a /check, then the
-- DELETE /leases/<id> that ends the lease it took, as nginx's
-- post_action does (a separate request on a kept-alive connection).
-- Each wrk thread keeps the leases its checks took and releases them
-- with its next requests.
local leases, n = {}, 0

request = function()
  if n > 0 then
    local id = leases[n]
    leases[n] = nil
    n = n - 1
    return wrk.format("DELETE", "/leases/" .. id)
  end
  return wrk.format(nil, wrk.path)
end

response = function(status, headers, body)
  local l = headers["X-Keygate-Lease"] or headers["x-keygate-lease"]
  if l ~= nil and l ~= "" then
    n = n + 1
    leases[n] = l
  end
end
